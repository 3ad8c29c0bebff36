//! The plan of a full pass split into `updated_at` windows walked at once.
//!
//! One keyset walk is a chain of dependent requests, so its speed is one page
//! per round trip. To use the whole rate allowance a full pass walks several
//! windows of `updated_at` at once. The plan starts as one open window
//! `[0, present)`; whenever a worker is idle it takes an unclaimed window or
//! splits the window with the most time left to walk at the middle of what
//! remains, so the work balances itself whatever the distribution of leads.
//!
//! The *open* window (no upper bound) reaches the present, where leads changed
//! during the pass arrive. It may finish only after every bounded window has
//! finished: a lead changed while a bounded window still had it ahead of its
//! cursor jumps to the present, and the open window's last walk meets it.
//!
//! This module is pure bookkeeping (no I/O): the caller persists each change.

/// A window is split only if it has at least this many pages left (by the
/// span of its last page).
pub const MIN_PAGES_TO_SPLIT: i64 = 4;

/// One window of `updated_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Number of the window within its pass.
    pub id: i64,
    /// Where the walk has reached (the next request starts here).
    pub cursor: i64,
    /// Last `updated_at` of the window (inclusive); `None` for the open window.
    pub end: Option<i64>,
    /// Walked to its end.
    pub done: bool,
}

impl Window {
    /// Seconds left to walk, counting the open window up to `now`.
    fn span_left(&self, now: i64) -> i64 {
        self.end.unwrap_or(now) - self.cursor
    }
}

/// What an idle worker should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// Walk this window (already claimed for the worker).
    Walk(Window),
    /// Walk this window, newly split off another (persist both first).
    Split {
        /// The window that was cut short: its new `end`.
        shortened: Window,
        /// The new window, claimed for the worker.
        new: Window,
    },
    /// Nothing left for this worker.
    Idle,
}

/// The windows of one pass and who walks them.
#[derive(Debug)]
pub struct WindowPlan {
    windows: Vec<(Window, bool)>,
    min_split_span: i64,
    /// Seconds the last page of each window covered: a window is split only
    /// when what it has left spans several such pages, so the tail of a pass
    /// is not cut into windows that each cost a request and hold nothing.
    page_spans: std::collections::HashMap<i64, i64>,
    /// The open window reached the present while bounded windows were
    /// pending: it waits for them (it is not walked again before).
    open_parked: bool,
}

impl WindowPlan {
    /// A plan over existing windows (none claimed). `min_split_span`: a window
    /// with fewer seconds left than twice this is not split.
    pub fn new(windows: Vec<Window>, min_split_span: i64) -> WindowPlan {
        WindowPlan {
            windows: windows.into_iter().map(|w| (w, false)).collect(),
            min_split_span: min_split_span.max(1),
            page_spans: std::collections::HashMap::new(),
            open_parked: false,
        }
    }

    /// The windows as they stand.
    pub fn windows(&self) -> Vec<Window> {
        self.windows.iter().map(|(w, _)| *w).collect()
    }

    /// Whether every window is done.
    pub fn all_done(&self) -> bool {
        self.windows.iter().all(|(w, _)| w.done)
    }

    fn bounded_pending(&self) -> bool {
        self.windows.iter().any(|(w, _)| w.end.is_some() && !w.done)
    }

    /// The next piece of work for an idle worker, at wall-clock `now`.
    pub fn assign(&mut self, now: i64) -> Assignment {
        // 1. A bounded window nobody walks.
        if let Some((w, claimed)) = self
            .windows
            .iter_mut()
            .find(|(w, claimed)| !*claimed && !w.done && w.end.is_some())
        {
            *claimed = true;
            return Assignment::Walk(*w);
        }
        // 2. The open window, unless it is parked waiting for the bounded ones.
        let open_waits = self.open_parked && self.bounded_pending();
        if let Some((w, claimed)) = self
            .windows
            .iter_mut()
            .find(|(w, claimed)| !*claimed && !w.done && w.end.is_none())
            && !open_waits
        {
            *claimed = true;
            return Assignment::Walk(*w);
        }
        // 3. Split the window with the most pages left.
        let min = self.min_split_span;
        let next_id = self.windows.iter().map(|(w, _)| w.id).max().unwrap_or(-1) + 1;
        let spans = &self.page_spans;
        let pages_left = |w: &Window| {
            spans
                .get(&w.id)
                .map_or(0, |span| w.span_left(now) / (*span).max(1))
        };
        let Some((victim, _)) = self
            .windows
            .iter_mut()
            .filter(|(w, _)| {
                !w.done && w.span_left(now) >= 2 * min && pages_left(w) >= MIN_PAGES_TO_SPLIT
            })
            .max_by_key(|(w, _)| pages_left(w))
        else {
            return Assignment::Idle;
        };
        let middle = victim.cursor + victim.span_left(now) / 2;
        let new = Window {
            id: next_id,
            cursor: middle,
            end: victim.end,
            done: false,
        };
        victim.end = Some(middle - 1);
        let shortened = *victim;
        if let Some(span) = self.page_spans.get(&shortened.id).copied() {
            self.page_spans.insert(new.id, span);
        }
        self.windows.push((new, true));
        Assignment::Split { shortened, new }
    }

    /// The window's walk reached `cursor` with a page whose oldest lead
    /// changed at `page_oldest`; returns the window as it now stands (its end
    /// may have been moved by a split meanwhile).
    pub fn advance(&mut self, id: i64, cursor: i64, page_oldest: Option<i64>) -> Window {
        let (w, _) = self.entry(id);
        let previous = w.cursor;
        w.cursor = w.cursor.max(cursor);
        let w = *w;
        // Only a page of leads tells the density (not a step past a crowded second).
        if let Some(oldest) = page_oldest {
            let from = oldest.max(previous);
            if cursor > from {
                self.page_spans.insert(id, cursor - from);
            }
        }
        w
    }

    /// The current state of a window (a split may have moved its end).
    pub fn get(&mut self, id: i64) -> Window {
        self.entry(id).0
    }

    /// The worker reached the end of the window's listing. A bounded window is
    /// done; the open window is done only when no bounded window is pending,
    /// otherwise it is released to be walked again later. Returns whether the
    /// window is done.
    pub fn reached_end(&mut self, id: i64) -> bool {
        let bounded_pending = self.bounded_pending();
        let (w, claimed) = self.entry(id);
        *claimed = false;
        if w.end.is_some() || !bounded_pending {
            w.done = true;
        }
        let parked = !w.done;
        if parked {
            self.open_parked = true;
        }
        !parked
    }

    /// The worker stopped walking the window before its end (error or stop).
    pub fn release(&mut self, id: i64) {
        self.entry(id).1 = false;
    }

    fn entry(&mut self, id: i64) -> &mut (Window, bool) {
        let index = self
            .windows
            .iter()
            .position(|(w, _)| w.id == id)
            .unwrap_or_else(|| unreachable!("window {id} is part of the plan"));
        &mut self.windows[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(cursor: i64) -> Window {
        Window {
            id: 0,
            cursor,
            end: None,
            done: false,
        }
    }

    #[test]
    fn idle_workers_split_the_longest_window_without_gaps() {
        let mut plan = WindowPlan::new(vec![open(990)], 10);
        let now = 2_000;
        assert_eq!(plan.assign(now), Assignment::Walk(open(990)));
        // A first page covered 10 seconds: plenty of pages are left.
        plan.advance(0, 1_000, Some(990));
        let Assignment::Split { shortened, new } = plan.assign(now) else {
            panic!("expected a split")
        };
        assert_eq!(shortened.end, Some(1_499));
        assert_eq!(
            (new.cursor, new.end),
            (1_500, None),
            "the new window is the open one"
        );
        let Assignment::Split { shortened, new } = plan.assign(now) else {
            panic!("expected a split")
        };
        assert_eq!(
            new.cursor,
            shortened.end.unwrap() + 1,
            "no gap between the halves"
        );
        // Windows cover [1000, now] without gaps or overlaps.
        let mut ws = plan.windows();
        ws.sort_by_key(|w| w.cursor);
        for pair in ws.windows(2) {
            assert_eq!(pair[0].end, Some(pair[1].cursor - 1));
        }
        assert_eq!(ws.last().unwrap().end, None);
    }

    #[test]
    fn open_window_finishes_only_after_the_bounded_ones() {
        let mut plan = WindowPlan::new(vec![open(0)], 30);
        let Assignment::Walk(w0) = plan.assign(100) else {
            panic!()
        };
        plan.page_spans.insert(w0.id, 5);
        let Assignment::Split { shortened, new } = plan.assign(100) else {
            panic!()
        };
        assert_eq!(shortened.id, w0.id);
        // w0 is now bounded [0, 49]; the new open window [50, ..) reaches the present.
        assert!(
            !plan.reached_end(new.id),
            "the open window waits for the bounded ones"
        );
        assert!(!plan.all_done());
        assert_eq!(
            plan.assign(100),
            Assignment::Idle,
            "a parked open window is not walked again yet"
        );
        assert!(plan.reached_end(w0.id));
        // Its turn now: claimed again, and done at its end.
        assert_eq!(plan.assign(100), Assignment::Walk(plan.get(new.id)));
        assert!(plan.reached_end(new.id));
        assert!(plan.all_done());
        assert_eq!(plan.assign(100), Assignment::Idle);
    }

    #[test]
    fn windows_with_few_pages_left_are_not_split() {
        let mut plan = WindowPlan::new(vec![open(0)], 10);
        assert!(matches!(plan.assign(1_000), Assignment::Walk(_)));
        plan.advance(0, 400, Some(0));
        // 600 seconds left at 400 seconds a page: under MIN_PAGES_TO_SPLIT.
        assert_eq!(plan.assign(1_000), Assignment::Idle);
    }

    #[test]
    fn small_windows_are_not_split() {
        let mut plan = WindowPlan::new(vec![open(95)], 10);
        assert!(matches!(plan.assign(100), Assignment::Walk(_)));
        assert_eq!(plan.assign(100), Assignment::Idle);
    }

    #[test]
    fn advance_reports_a_moved_end() {
        let mut plan = WindowPlan::new(vec![open(0)], 10);
        plan.assign(1_000);
        plan.page_spans.insert(0, 10);
        let Assignment::Split { shortened, .. } = plan.assign(1_000) else {
            panic!()
        };
        let w = plan.advance(shortened.id, 600, Some(500));
        assert_eq!(w.end, Some(499));
        assert!(
            w.cursor > w.end.unwrap(),
            "the walker sees it passed its end"
        );
    }
}
