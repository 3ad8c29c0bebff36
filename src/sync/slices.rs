//! How an offset listing read whole is cut into requests: Kommo answers
//! `page=P&limit=L` with the elements at offsets `[(P-1)·L, P·L)`, computed
//! when the request arrives.
//!
//! - **Tiled**: pages `1, 2, …` of one limit, asked one at a time.
//! - **Overlapping**: slices whose limits shrink so that each one starts a
//!   few elements before the previous one ended, asked together. A pass of
//!   overlapping slices proves itself: a record leaving (or entering) the
//!   listing between two neighbouring slices' answers shifts the later one,
//!   and their shared elements no longer match ([`overlap_agrees`]). When
//!   every neighbouring pair agrees, each two consecutive elements the
//!   pass shows were consecutive in one answer, so no element that stayed
//!   in the listing can sit unseen between them, whatever order Kommo
//!   answered the slices in. Tiled pages have nothing to compare: they are
//!   safe only asked one after the other, and only two passes in a row
//!   agreeing prove them.

/// One request of an offset listing: `page` (from 1) of `limit` elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slice {
    pub page: u32,
    pub limit: u32,
}

/// Elements two overlapping slices share at most (what overlapping costs:
/// at most this many elements read twice per slice).
pub const MAX_OVERLAP: usize = 50;

impl Slice {
    /// The offset of its first element.
    pub fn start(self) -> usize {
        (self.page as usize - 1) * self.limit as usize
    }

    /// The offset after its last element, when it is full.
    pub fn end(self) -> usize {
        self.start() + self.limit as usize
    }
}

/// How an offset listing read whole is cut into requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// Pages of one limit, asked one at a time.
    Tiled,
    /// Slices that overlap their neighbours, asked together.
    Overlapping,
}

impl Layout {
    /// The slices of a pass, in order, for a listing read `limit` at a time.
    pub fn slices(self, limit: u32) -> impl Iterator<Item = Slice> {
        let mut previous: Option<Slice> = None;
        std::iter::from_fn(move || {
            let next = match (self, previous) {
                (_, None) => Slice { page: 1, limit },
                (Layout::Tiled, Some(p)) => Slice {
                    page: p.page + 1,
                    limit,
                },
                (Layout::Overlapping, Some(p)) => overlapping_after(p, limit),
            };
            previous = Some(next);
            Some(next)
        })
    }
}

/// The largest slice (limit at most `limit`) that starts after `previous`
/// starts and at most [`MAX_OVERLAP`] elements before it ends.
fn overlapping_after(previous: Slice, limit: u32) -> Slice {
    let end = previous.end();
    (1..=limit)
        .rev()
        .find_map(|l| {
            let before = (end - 1) / l as usize;
            let start = before * l as usize;
            (start + MAX_OVERLAP >= end && start > previous.start()).then(|| Slice {
                page: u32::try_from(before + 1).unwrap_or(u32::MAX),
                limit: l,
            })
        })
        // A limit of 1 always fits: it starts at `end - 1`.
        .unwrap_or(Slice {
            page: u32::try_from(end).unwrap_or(u32::MAX),
            limit: 1,
        })
}

/// Whether two neighbouring slices of an overlapping pass agree where they
/// overlap: the elements `after` shows first are the ones `before` showed
/// last, position by position (an element that could not be read is
/// `None`). `before` showed `before_shown` from its start; a gap between the
/// two, or an `after` too short to cover the overlap, proves nothing.
pub(super) fn overlap_agrees<K: Eq>(
    before: Slice,
    before_shown: &[Option<K>],
    after: Slice,
    after_shown: &[Option<K>],
) -> bool {
    let reached = before.start() + before_shown.len();
    let Some(overlap) = reached.checked_sub(after.start()).filter(|o| *o > 0) else {
        return false;
    };
    overlap <= before_shown.len()
        && overlap <= after_shown.len()
        && before_shown[before_shown.len() - overlap..] == after_shown[..overlap]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_slices_each_start_inside_the_one_before_and_reach_far() {
        let slices: Vec<Slice> = Layout::Overlapping.slices(250).take(1_000).collect();
        assert_eq!(
            slices[0],
            Slice {
                page: 1,
                limit: 250
            }
        );
        assert_eq!(
            slices[1],
            Slice {
                page: 2,
                limit: 249
            }
        );
        for pair in slices.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(b.start() > a.start(), "{a:?} then {b:?}");
            let overlap = a.end() - b.start();
            assert!((1..=MAX_OVERLAP).contains(&overlap), "{a:?} then {b:?}");
            assert!(
                b.limit as usize > MAX_OVERLAP,
                "{b:?} reads little that is new"
            );
        }
        // 1,000 slices reach past 150,000 elements.
        assert!(slices[999].end() > 150_000, "{:?}", slices[999]);
    }

    #[test]
    fn tiled_pages_follow_each_other() {
        let pages: Vec<Slice> = Layout::Tiled.slices(250).take(3).collect();
        assert_eq!(
            pages.iter().map(|s| s.start()).collect::<Vec<_>>(),
            [0, 250, 500]
        );
    }

    #[test]
    fn neighbours_agree_only_when_their_shared_elements_match() {
        let a = Slice { page: 1, limit: 4 };
        let b = Slice { page: 2, limit: 3 }; // offsets 3..6, shares offset 3
        let shown = |ids: &[i64]| ids.iter().map(|i| Some(*i)).collect::<Vec<_>>();
        assert!(overlap_agrees(
            a,
            &shown(&[1, 2, 3, 4]),
            b,
            &shown(&[4, 5, 6])
        ));
        // A record before offset 3 left between the two answers: `b` shifted.
        assert!(!overlap_agrees(
            a,
            &shown(&[1, 2, 3, 4]),
            b,
            &shown(&[5, 6, 7])
        ));
        // One entered: `b` shows again what `a` showed.
        assert!(!overlap_agrees(
            a,
            &shown(&[1, 2, 3, 4]),
            b,
            &shown(&[3, 4, 5])
        ));
        // `a` cut short: a gap between the two.
        assert!(!overlap_agrees(
            a,
            &shown(&[1, 2, 3]),
            b,
            &shown(&[4, 5, 6])
        ));
        // `b` empty where it should show the shared element.
        assert!(!overlap_agrees(a, &shown(&[1, 2, 3, 4]), b, &shown(&[])));
        // An unreadable element in the same place in both.
        let with_hole = [Some(1), Some(2), Some(3), None];
        assert!(overlap_agrees(a, &with_hole, b, &[None, Some(5)]));
    }
}
