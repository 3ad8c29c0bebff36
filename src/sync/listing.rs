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
//!   until two passes in a row show the same elements.
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

use super::{RunProgress, SyncError, Syncer};
use crate::kommo::structure::{Keyed, Listed};
use crate::kommo::{LeadEventsPage, LeadId, LeadPage};

/// Passes over one offset listing before giving up on reading it whole.
pub const MAX_PASSES_PER_LISTING: u32 = 8;
/// Pages of one pass at most: a `_links.next` that never ends must not
/// hold the sync forever.
pub const MAX_PAGES_PER_PASS: u32 = 1_000;

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

    /// Reads an offset listing whole: passes of pages `1, 2, ...` (each
    /// page from `page`, numbered from 1) up to the page that claims the
    /// end, until two passes in a row show the same elements. A listing that
    /// never settles comes back with `settled` false (what the last pass
    /// showed, which proves no absence); one expected not empty that never
    /// showed an element is an error.
    pub(super) async fn read_whole<A: Answer, F: Future<Output = Result<A, SyncError>>>(
        &self,
        progress: &RunProgress,
        what: &'static str,
        limit: usize,
        expect: Expect,
        mut page: impl FnMut(u32) -> F,
    ) -> Result<Listing<A>, SyncError> {
        let mut previous: Option<BTreeSet<A::Key>> = None;
        let mut last = None;
        for pass in 1..=MAX_PASSES_PER_LISTING {
            let mut pages = Vec::new();
            let mut keys = BTreeSet::new();
            let mut readable = true;
            let mut ended = false;
            for number in 1..=MAX_PAGES_PER_PASS {
                let answer = page(number).await?;
                keys.extend(answer.keys());
                readable &= answer.unreadable() == 0;
                ended = claims_end(&answer, limit);
                pages.push(answer);
                if ended {
                    break;
                }
            }
            tracing::debug!(
                run_id = progress.run_id,
                listing = what,
                pass,
                shown = keys.len(),
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
            let agrees =
                !(expect.not_empty && empty) && previous.as_ref().is_some_and(|p| *p == keys);
            if agrees {
                return Ok(Listing {
                    pages,
                    keys,
                    settled: true,
                    readable,
                });
            }
            // A pass that showed nothing where something was due is no term
            // of comparison.
            previous = (!(expect.not_empty && empty)).then(|| keys.clone());
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

impl Answer for LeadPage {
    type Key = LeadId;
    fn received(&self) -> usize {
        LeadPage::received(self)
    }
    fn unreadable(&self) -> usize {
        self.skipped.len()
    }
    fn has_next(&self) -> bool {
        self.has_next
    }
    fn keys(&self) -> Vec<LeadId> {
        self.leads.iter().map(|l| l.id).collect()
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

/// What a page of leads showed, once its leads are committed (a crowded
/// second is read without holding its pages).
pub(super) struct Shown {
    pub received: usize,
    pub unreadable: usize,
    pub has_next: bool,
    pub ids: Vec<LeadId>,
}

impl From<&LeadPage> for Shown {
    fn from(page: &LeadPage) -> Shown {
        Shown {
            received: page.received(),
            unreadable: page.skipped.len(),
            has_next: page.has_next,
            ids: page.leads.iter().map(|l| l.id).collect(),
        }
    }
}

impl Answer for Shown {
    type Key = LeadId;
    fn received(&self) -> usize {
        self.received
    }
    fn unreadable(&self) -> usize {
        self.unreadable
    }
    fn has_next(&self) -> bool {
        self.has_next
    }
    fn keys(&self) -> Vec<LeadId> {
        self.ids.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(received: usize, has_next: bool) -> Shown {
        Shown {
            received,
            unreadable: 0,
            has_next,
            ids: (0..received as i64).collect(),
        }
    }

    fn ids(ids: &[i64]) -> Shown {
        Shown {
            received: ids.len(),
            unreadable: 0,
            has_next: false,
            ids: ids.to_vec(),
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
        unreadable.received += 1;
        unreadable.unreadable = 1;
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
