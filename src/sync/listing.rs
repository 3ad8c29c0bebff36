//! The one reader every listing goes through, and the one place that decides
//! when a listing has ended.
//!
//! A listing proves that a record exists; its silence proves nothing. Kommo
//! ends a listing with a `204`, an empty `200` or a short page without
//! `_links.next`, and every one of those can also be a fault: a page cut
//! short, an answer lost on the way, an offset shifted by a record deleted
//! between two requests. So the rule, stated once:
//!
//! - **An end is believed when the same question gets it twice in a row.**
//!   An answer that claims an end ([`claims_end`]: no `next` and fewer
//!   elements than asked for) is asked again until two answers in a row
//!   claim the same end (the second showing the same elements as the first,
//!   or every one of them and more: the listing grew); only then is it
//!   believed, and
//!   a question that never gets the same answer twice is an error. Any other
//!   answer is taken as it is: it shows records and says more may follow
//!   (on a listing paged by key, a readable answer that differs from the one
//!   before it too: the next question starts after it and reads again what
//!   the other answer showed past it).
//! - For a listing paged by offset and read whole (a crowded second, a
//!   structure listing, records asked for by id), the question is the whole
//!   listing: it is read in passes, page 1 to the page that claims the end,
//!   until two passes in a row show the same elements. Tiled pages are
//!   asked one at a time; the overlapping slices of a crowded second
//!   together, and a pass whose neighbouring slices disagree where they
//!   overlap is never one of the two (see [`super::slices`]).
//! - **A listing that a page showed full cannot read empty**: a pass that
//!   shows nothing is never one of the two that agree.
//! - **An answer with elements it could not read, or with a `next`, proves
//!   nothing about the ids it does not show**: only a listing read whole,
//!   from passes without unreadable elements, proves an absence
//!   ([`Listing::proves_absence`]).
//!
//! The walks keep their own logic (what to ask next, what a page means) and
//! have no end rule of their own: [`Syncer::settle`] answers one question,
//! [`Syncer::read_whole`] reads one offset listing.

use std::collections::BTreeSet;

use futures_util::stream::{FuturesOrdered, StreamExt};

use super::slices::{Layout, Slice, overlap_agrees};
use super::{RunProgress, SyncError, Syncer};
use crate::kommo::structure::{Keyed, Listed};
use crate::kommo::{LeadEventsPage, RecordId, RecordPage};

/// Passes over one offset listing before giving up on reading it whole.
pub const MAX_PASSES_PER_LISTING: u32 = 8;
/// Pages of one pass at most: a `_links.next` that never ends must not
/// hold the sync forever.
pub const MAX_PAGES_PER_PASS: u32 = 1_000;
/// Overlapping slices a pass asks for at once where the previous pass
/// showed they are needed.
pub const MAX_SLICES_IN_FLIGHT: usize = 4;
/// Overlapping slices a pass asks for ahead of the answers where it does
/// not know yet whether they are needed (one past the end is asked for in
/// vain).
pub const SPECULATIVE_SLICES: usize = 2;

/// One answer of a listing, whatever it lists.
pub(super) trait Answer {
    /// What tells one element from another (an id).
    type Key: Ord + Clone;
    /// Elements received, readable or not.
    fn received(&self) -> usize;
    /// Elements received that could not be read.
    fn unreadable(&self) -> usize;
    /// `_links.next` was present.
    fn has_next(&self) -> bool;
    /// The keys of the elements shown.
    fn keys(&self) -> Vec<Self::Key>;
    /// The key at each position of the answer, in order (`None` where an
    /// element could not be read).
    fn positions(&self) -> Vec<Option<Self::Key>> {
        self.keys().into_iter().map(Some).collect()
    }
}

/// Whether `answer` says the listing ends with it: no `next`, and fewer
/// elements than the `limit` asked for (a `204` or an empty `200` included).
pub(super) fn claims_end(answer: &impl Answer, limit: usize) -> bool {
    !answer.has_next() && answer.received() < limit
}

/// What an answer shows, to tell whether two answers agree.
fn shown<A: Answer>(answer: &A) -> (usize, BTreeSet<A::Key>) {
    (answer.received(), answer.keys().into_iter().collect())
}

/// How a listing's next question follows an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Paging {
    /// It starts after the answer's last element (the lead walks).
    ByKey,
    /// It asks for the next page number (events).
    ByNumber,
}

/// Whether `again`, the answer after `first` to the same question, agrees
/// with it: it shows the same elements, or, readable, every element `first`
/// showed and more (the listing grew between the two; nothing `first`
/// showed is missing from the answer taken). An empty `first` is agreed
/// with only by an empty `again`: it said nothing to be confirmed.
fn agrees<A: Answer>(first: &A, again: &A) -> bool {
    let (first_received, first_keys) = shown(first);
    let (again_received, again_keys) = shown(again);
    (first_received, &first_keys) == (again_received, &again_keys)
        || (!first_keys.is_empty()
            && again.unreadable() == 0
            && again_keys.is_superset(&first_keys))
}

/// A question's answer, as believed.
pub(super) enum Said<A> {
    /// More may follow it (a short one included, when the end it claimed
    /// was not said again).
    More(A),
    /// The listing ends with it (the same end was said twice in a row).
    End(A),
}

/// An offset listing as read by [`Syncer::read_whole`].
pub(super) struct Listing<A: Answer> {
    /// The pages of the last pass.
    pub pages: Vec<A>,
    /// The keys shown by the last pass.
    pub keys: BTreeSet<A::Key>,
    /// Two passes in a row showed the same elements.
    pub settled: bool,
    /// Every element of those passes could be read.
    pub readable: bool,
}

impl<A: Answer> Listing<A> {
    /// The listing was read whole: a key it does not show is absent.
    pub fn proves_absence(&self) -> bool {
        self.settled && self.readable
    }
}

/// The bounds of an offset listing read whole.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Expect {
    /// A page showed it full: a pass that shows nothing is not an answer.
    pub not_empty: bool,
    /// It cannot hold more than this many elements (the ids asked for): a
    /// pass that shows them all, readable, is the whole listing at once.
    pub at_most: Option<usize>,
}

impl Syncer {
    /// Asks one question and tells whether its answer ends the listing. An
    /// answer that claims an end, or that holds elements it could not read,
    /// is asked again until two answers in a row show the same elements
    /// ([`MAX_PASSES_PER_LISTING`] answers at most, then an error). An
    /// answer that claims no end and is readable is taken as it is: more
    /// follows it. On a listing paged by key, a readable answer that
    /// differs from the one before it is taken as one after which more may
    /// follow: the next question starts after its last element, so whatever
    /// the other answer showed past it is asked for again (a busy account's
    /// newest leads change under every question). On a listing paged by
    /// number the next question skips the page, so only two answers that
    /// agree let it go on.
    pub(super) async fn settle<A: Answer, F: Future<Output = Result<A, SyncError>>>(
        &self,
        progress: &RunProgress,
        what: &'static str,
        paging: Paging,
        limit: usize,
        mut ask: impl FnMut() -> F,
    ) -> Result<Said<A>, SyncError> {
        let mut previous: Option<A> = None;
        for _ in 0..MAX_PASSES_PER_LISTING {
            let answer = ask().await?;
            let ends = claims_end(&answer, limit);
            let readable = answer.unreadable() == 0;
            if !ends && readable {
                return Ok(Said::More(answer));
            }
            if let Some(previous) = &previous {
                if claims_end(previous, limit) == ends && agrees(previous, &answer) {
                    return Ok(if ends {
                        Said::End(answer)
                    } else {
                        Said::More(answer)
                    });
                }
                if paging == Paging::ByKey && readable {
                    return Ok(Said::More(answer));
                }
            }
            tracing::debug!(
                run_id = progress.run_id,
                listing = what,
                received = answer.received(),
                unreadable = answer.unreadable(),
                "an end or an unreadable element is believed only when said twice in a row; asked again"
            );
            previous = Some(answer);
        }
        Err(SyncError::ListingUnsettled { listing: what })
    }

    /// Reads an offset listing whole: passes over its slices (see
    /// [`Layout`]; `slice` asks for one) up to the one that claims the end,
    /// until two passes in a row show the same elements. Tiled pages are
    /// asked one at a time; overlapping slices together (every slice of the
    /// previous pass at once, then [`SPECULATIVE_SLICES`] ahead), and a pass
    /// whose neighbouring slices disagree where they overlap is no term of
    /// comparison. A listing that never settles comes back with `settled`
    /// false (what the last pass showed, which proves no absence); one
    /// expected not empty that never showed an element is an error.
    pub(super) async fn read_whole<A: Answer, F: Future<Output = Result<A, SyncError>>>(
        &self,
        progress: &RunProgress,
        what: &'static str,
        layout: Layout,
        limit: u32,
        expect: Expect,
        mut slice: impl FnMut(Slice) -> F,
    ) -> Result<Listing<A>, SyncError> {
        let mut previous: Option<BTreeSet<A::Key>> = None;
        let mut last = None;
        // Slices known to be needed: a page shown full needs the next one.
        let mut known = if expect.not_empty { 2 } else { 1 };
        for pass in 1..=MAX_PASSES_PER_LISTING {
            let read = read_pass(layout, limit, known, &mut slice).await?;
            known = read.pages.len();
            let Pass {
                pages,
                keys,
                readable,
                ended,
                aligned,
            } = read;
            tracing::debug!(
                run_id = progress.run_id,
                listing = what,
                pass,
                shown = keys.len(),
                aligned,
                "read one pass of a listing"
            );
            if !ended {
                // A `next` that never ends: what was read is kept, nothing
                // is concluded from it, and no pass is tried again.
                tracing::warn!(
                    run_id = progress.run_id,
                    listing = what,
                    pages = MAX_PAGES_PER_PASS,
                    "the listing still had a next page after the most pages read; what was read \
                     is kept and no absence is concluded from it"
                );
                return Ok(Listing {
                    pages,
                    keys,
                    settled: false,
                    readable,
                });
            }
            let empty = keys.is_empty() && readable;
            if readable && expect.at_most.is_some_and(|most| keys.len() >= most) {
                return Ok(Listing {
                    pages,
                    keys,
                    settled: true,
                    readable,
                });
            }
            // A pass that showed nothing where something was due, or whose
            // slices disagree where they overlap, is no term of comparison.
            let term = aligned && !(expect.not_empty && empty);
            if term && previous.as_ref().is_some_and(|p| *p == keys) {
                return Ok(Listing {
                    pages,
                    keys,
                    settled: true,
                    readable,
                });
            }
            previous = term.then(|| keys.clone());
            last = Some(Listing {
                pages,
                keys,
                settled: false,
                readable,
            });
        }
        match last {
            Some(listing) if !(expect.not_empty && listing.keys.is_empty()) => Ok(listing),
            _ => Err(SyncError::ListingReadEmpty { listing: what }),
        }
    }
}

/// One pass over an offset listing.
struct Pass<A: Answer> {
    /// Its answers, up to the one that claims the end.
    pages: Vec<A>,
    keys: BTreeSet<A::Key>,
    /// Every element could be read.
    readable: bool,
    /// An answer claimed the end (else the most pages were read).
    ended: bool,
    /// Overlapping slices: every neighbouring pair agrees where they overlap.
    aligned: bool,
}

/// Reads one pass: its slices in order up to the one that claims the end,
/// `known` of them (and then [`SPECULATIVE_SLICES`]) in flight at once for
/// overlapping slices, one at a time for tiled pages. Answers to slices
/// past the end are awaited (never dropped midway) and ignored; on an error
/// the slices in flight are awaited too, then the error is returned.
async fn read_pass<A: Answer, F: Future<Output = Result<A, SyncError>>>(
    layout: Layout,
    limit: u32,
    known: usize,
    slice: &mut impl FnMut(Slice) -> F,
) -> Result<Pass<A>, SyncError> {
    let mut pass = Pass {
        pages: Vec::new(),
        keys: BTreeSet::new(),
        readable: true,
        ended: false,
        aligned: true,
    };
    let mut slices = layout.slices(limit).take(MAX_PAGES_PER_PASS as usize);
    let mut in_flight = FuturesOrdered::new();
    let mut asked = 0;
    let mut failed = None;
    let mut before: Option<(Slice, Vec<Option<A::Key>>)> = None;
    loop {
        let wanted = match layout {
            Layout::Tiled => 1,
            Layout::Overlapping if asked < known => MAX_SLICES_IN_FLIGHT,
            Layout::Overlapping => SPECULATIVE_SLICES,
        };
        while !pass.ended && failed.is_none() && in_flight.len() < wanted {
            let Some(next) = slices.next() else { break };
            let answer = slice(next);
            in_flight.push_back(async move { (next, answer.await) });
            asked += 1;
        }
        let Some((asked_for, answer)) = in_flight.next().await else {
            break;
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                failed.get_or_insert(e);
                continue;
            }
        };
        if pass.ended || failed.is_some() {
            continue;
        }
        if layout == Layout::Overlapping {
            let shown = answer.positions();
            if let Some((before, before_shown)) = &before {
                pass.aligned &= overlap_agrees(*before, before_shown, asked_for, &shown);
            }
            before = Some((asked_for, shown));
        }
        pass.keys.extend(answer.keys());
        pass.readable &= answer.unreadable() == 0;
        pass.ended = claims_end(&answer, asked_for.limit as usize);
        pass.pages.push(answer);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(pass),
    }
}

impl Answer for RecordPage {
    type Key = RecordId;
    fn received(&self) -> usize {
        RecordPage::received(self)
    }
    fn unreadable(&self) -> usize {
        self.skipped.len()
    }
    fn has_next(&self) -> bool {
        self.has_next
    }
    fn keys(&self) -> Vec<RecordId> {
        self.records.iter().map(|l| l.id).collect()
    }
    fn positions(&self) -> Vec<Option<RecordId>> {
        lead_positions(self)
    }
}

impl Answer for LeadEventsPage {
    type Key = String;
    fn received(&self) -> usize {
        self.page.received
    }
    fn unreadable(&self) -> usize {
        self.page.skipped.len()
    }
    fn has_next(&self) -> bool {
        self.page.has_next
    }
    fn keys(&self) -> Vec<String> {
        self.page.ids.clone()
    }
}

impl<T: Keyed> Answer for Listed<T> {
    type Key = i64;
    fn received(&self) -> usize {
        self.received
    }
    fn unreadable(&self) -> usize {
        self.skipped.len()
    }
    fn has_next(&self) -> bool {
        self.has_next
    }
    fn keys(&self) -> Vec<i64> {
        self.items.iter().filter_map(Keyed::id).collect()
    }
}

/// The id at each position of a page of leads (`None` where a lead could
/// not be read).
fn lead_positions(page: &RecordPage) -> Vec<Option<RecordId>> {
    let mut leads = page.records.iter();
    (0..page.received())
        .map(|index| {
            if page.skipped.iter().any(|s| s.index == index) {
                None
            } else {
                leads.next().map(|l| l.id)
            }
        })
        .collect()
}

/// What a page of leads showed, once its leads are committed (a crowded
/// second is read without holding its pages).
pub(super) struct Shown {
    pub has_next: bool,
    /// The id at each position (`None`: a lead that could not be read).
    pub positions: Vec<Option<RecordId>>,
}

impl From<&RecordPage> for Shown {
    fn from(page: &RecordPage) -> Shown {
        Shown {
            has_next: page.has_next,
            positions: lead_positions(page),
        }
    }
}

impl Answer for Shown {
    type Key = RecordId;
    fn received(&self) -> usize {
        self.positions.len()
    }
    fn unreadable(&self) -> usize {
        self.positions.iter().filter(|p| p.is_none()).count()
    }
    fn has_next(&self) -> bool {
        self.has_next
    }
    fn keys(&self) -> Vec<RecordId> {
        self.positions.iter().flatten().copied().collect()
    }
    fn positions(&self) -> Vec<Option<RecordId>> {
        self.positions.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(received: usize, has_next: bool) -> Shown {
        Shown {
            has_next,
            positions: (0..received as i64).map(Some).collect(),
        }
    }

    fn ids(ids: &[i64]) -> Shown {
        Shown {
            has_next: false,
            positions: ids.iter().map(|i| Some(*i)).collect(),
        }
    }

    #[test]
    fn an_end_said_again_agrees_when_it_shows_what_the_first_showed_or_more() {
        assert!(agrees(&ids(&[1, 2, 3]), &ids(&[1, 2, 3])));
        assert!(agrees(&ids(&[1, 2, 3]), &ids(&[1, 2, 3, 4])));
        assert!(agrees(&ids(&[]), &ids(&[])));
        // Cut short, or something the first showed is missing.
        assert!(!agrees(&ids(&[1, 2, 3, 4]), &ids(&[1, 2])));
        assert!(!agrees(&ids(&[1, 2, 3]), &ids(&[1, 2, 4])));
        // An empty first answer confirms nothing.
        assert!(!agrees(&ids(&[]), &ids(&[1])));
        // An element that cannot be read in the second answer.
        let mut unreadable = ids(&[1, 2, 3]);
        unreadable.positions.push(None);
        assert!(!agrees(&ids(&[1, 2]), &unreadable));
    }

    #[test]
    fn only_a_short_answer_without_next_claims_an_end() {
        assert!(claims_end(&page(0, false), 250));
        assert!(claims_end(&page(249, false), 250));
        assert!(!claims_end(&page(250, false), 250));
        assert!(!claims_end(&page(3, true), 250));
        assert!(!claims_end(&page(0, true), 250));
    }
}
