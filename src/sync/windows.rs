//! The plan of a full pass split into `updated_at` windows walked at once.
//!
//! One keyset walk is a chain of dependent requests, so its speed is one page
//! per round trip. To use the whole rate allowance a full pass walks several
//! windows of `updated_at` at once. The plan starts as one open window
//! `[0, present)`; whenever a worker is idle it takes an unclaimed window or
//! splits the window with the most time left to walk at the middle of what
//! remains, so the work balances itself whatever the distribution of leads.
//!
//! The *open* window (no upper bound) reaches the present. A lead that
//! changes while a window still has it ahead jumps past every window's reach;
//! the pass need not chase it: it asks for every mirrored lead it did not see
//! by id before marking any deleted, and the incremental cursor it leaves
//! behind (its start minus the overlap) makes the next incremental sync read
//! every change made while it ran.
//!
//! A split is proposed by [`WindowPlan::assign`], persisted by the caller, and
//! only then applied with [`WindowPlan::apply_split`]: the plan in memory never
//! holds a boundary the database does not.
//!
//! This module is pure bookkeeping (no I/O): the caller persists each change.

use std::collections::HashMap;
use std::time::Duration;

pub use crate::store::Window;

/// A window is split only if it has at least this many pages left (by the
/// span of its last page).
pub const MIN_PAGES_TO_SPLIT: i64 = 2;

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
    /// Split a window: persist both, then [`WindowPlan::apply_split`] (or
    /// [`WindowPlan::abandon_split`] if that failed) and walk `new`.
    Split {
        /// The window to cut short, with its new `end`.
        shortened: Window,
        /// The new window, for the worker.
        new: Window,
    },
    /// Nothing left for this worker.
    Idle,
}

/// A window and its bookkeeping.
#[derive(Debug)]
struct Slot {
    window: Window,
    /// A worker walks it.
    claimed: bool,
    /// A split of it is being persisted.
    splitting: bool,
}

/// The windows of one pass and who walks them.
#[derive(Debug)]
pub struct WindowPlan {
    slots: Vec<Slot>,
    min_split_span: i64,
    /// Seconds the last page of each window covered: a window is split only
    /// when what it has left spans several such pages, so the tail of a pass
    /// is not cut into windows that each cost a request and hold nothing.
    page_spans: HashMap<i64, i64>,
    next_id: i64,
    /// Pages committed and window ends reached so far.
    steps: u64,
    /// The first page's round trip and commit, as a walk measured it.
    first_step: Option<Duration>,
}

impl WindowPlan {
    /// A plan over existing windows (none claimed). `min_split_span`: a window
    /// with fewer seconds left than twice this is not split.
    pub fn new(windows: Vec<Window>, min_split_span: i64) -> WindowPlan {
        let next_id = windows.iter().map(|w| w.id).max().unwrap_or(-1) + 1;
        WindowPlan {
            slots: windows
                .into_iter()
                .map(|window| Slot {
                    window,
                    claimed: false,
                    splitting: false,
                })
                .collect(),
            min_split_span: min_split_span.max(1),
            page_spans: HashMap::new(),
            next_id,
            steps: 0,
            first_step: None,
        }
    }

    /// The windows as they stand.
    pub fn windows(&self) -> Vec<Window> {
        self.slots.iter().map(|s| s.window).collect()
    }

    /// Pages committed and window ends reached since the plan was made.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One step of a walk (a page's round trip and its commit, without the
    /// wait for the pacer); the first one noted is kept.
    pub fn note_step(&mut self, step: Duration) {
        self.first_step.get_or_insert(step);
    }

    /// The first step noted, if any.
    pub fn first_step(&self) -> Option<Duration> {
        self.first_step
    }

    /// Whether every window is done.
    pub fn all_done(&self) -> bool {
        self.slots.iter().all(|s| s.window.done)
    }

    /// The next piece of work for an idle worker, at `now` (Kommo's clock).
    pub fn assign(&mut self, now: i64) -> Assignment {
        // 1. A window nobody walks.
        if let Some(slot) = self.slots.iter_mut().find(|s| !s.claimed && !s.window.done) {
            slot.claimed = true;
            return Assignment::Walk(slot.window);
        }
        // 2. Propose to split the window with the most pages left.
        let min = self.min_split_span;
        let spans = &self.page_spans;
        let pages_left = |w: &Window| {
            spans
                .get(&w.id)
                .map_or(0, |span| w.span_left(now) / (*span).max(1))
        };
        let Some(victim) = self
            .slots
            .iter_mut()
            .filter(|s| {
                !s.window.done
                    && !s.splitting
                    && s.window.span_left(now) >= 2 * min
                    && pages_left(&s.window) >= MIN_PAGES_TO_SPLIT
            })
            .max_by_key(|s| pages_left(&s.window))
        else {
            return Assignment::Idle;
        };
        victim.splitting = true;
        let middle = victim.window.cursor + victim.window.span_left(now) / 2;
        let new = Window {
            id: self.next_id,
            cursor: middle,
            end: victim.window.end,
            done: false,
        };
        self.next_id += 1;
        let shortened = Window {
            end: Some(middle - 1),
            ..victim.window
        };
        Assignment::Split { shortened, new }
    }

    /// The split proposed by [`WindowPlan::assign`] is persisted: cut the
    /// window short and add the new one, claimed by the worker. Returns the
    /// new window.
    pub fn apply_split(&mut self, shortened: &Window, new: Window) -> Window {
        let slot = self.slot(shortened.id);
        slot.splitting = false;
        slot.window.end = shortened.end;
        if let Some(span) = self.page_spans.get(&shortened.id).copied() {
            self.page_spans.insert(new.id, span);
        }
        self.slots.push(Slot {
            window: new,
            claimed: true,
            splitting: false,
        });
        new
    }

    /// Persisting the proposed split failed: the window stays whole.
    pub fn abandon_split(&mut self, shortened: &Window) {
        self.slot(shortened.id).splitting = false;
    }

    /// The window as it will stand once a page reaching `cursor` is
    /// committed (to persist with the page).
    pub fn advanced(&mut self, id: i64, cursor: i64) -> Window {
        let w = self.slot(id).window;
        Window {
            cursor: w.cursor.max(cursor),
            ..w
        }
    }

    /// A page reaching `cursor`, whose oldest lead changed at `page_oldest`,
    /// is committed; returns the window as it now stands (its end may have
    /// been moved by a split meanwhile).
    pub fn advance(&mut self, id: i64, cursor: i64, page_oldest: Option<i64>) -> Window {
        self.steps += 1;
        let slot = self.slot(id);
        let previous = slot.window.cursor;
        slot.window.cursor = previous.max(cursor);
        let w = slot.window;
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
        self.slot(id).window
    }

    /// The worker reached the end of the window's listing: it is done.
    /// Returns the window as it now stands.
    pub fn reached_end(&mut self, id: i64) -> Window {
        self.steps += 1;
        let slot = self.slot(id);
        slot.claimed = false;
        slot.window.done = true;
        slot.window
    }

    /// The worker stopped walking the window before its end (error or stop).
    pub fn release(&mut self, id: i64) {
        self.slot(id).claimed = false;
    }

    fn slot(&mut self, id: i64) -> &mut Slot {
        let index = self
            .slots
            .iter()
            .position(|s| s.window.id == id)
            .unwrap_or_else(|| unreachable!("window {id} is part of the plan"));
        &mut self.slots[index]
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

    /// Expects a split proposal and applies it as a worker would once saved.
    fn split(plan: &mut WindowPlan, now: i64) -> (Window, Window) {
        let Assignment::Split { shortened, new } = plan.assign(now) else {
            panic!("expected a split")
        };
        plan.apply_split(&shortened, new);
        (shortened, new)
    }

    #[test]
    fn idle_workers_split_the_longest_window_without_gaps() {
        let mut plan = WindowPlan::new(vec![open(990)], 10);
        let now = 2_000;
        assert_eq!(plan.assign(now), Assignment::Walk(open(990)));
        // A first page covered 10 seconds: plenty of pages are left.
        plan.advance(0, 1_000, Some(990));
        let (shortened, new) = split(&mut plan, now);
        assert_eq!(shortened.end, Some(1_499));
        assert_eq!(
            (new.cursor, new.end),
            (1_500, None),
            "the new window is the open one"
        );
        let (shortened, new) = split(&mut plan, now);
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
    fn a_split_changes_the_plan_only_once_applied() {
        let mut plan = WindowPlan::new(vec![open(0)], 10);
        assert!(matches!(plan.assign(1_000), Assignment::Walk(_)));
        plan.advance(0, 10, Some(0));
        let Assignment::Split { shortened, new } = plan.assign(1_000) else {
            panic!("expected a split")
        };
        assert_eq!(plan.get(0).end, None, "not cut short before it is saved");
        assert_eq!(
            plan.assign(1_000),
            Assignment::Idle,
            "a window being split is not proposed twice"
        );
        plan.abandon_split(&shortened);
        assert_eq!(plan.windows(), vec![plan.get(0)], "nothing was added");
        let Assignment::Split {
            shortened,
            new: again,
        } = plan.assign(1_000)
        else {
            panic!("the window can be split again")
        };
        assert_ne!(again.id, new.id, "ids are never reused");
        assert_eq!(plan.apply_split(&shortened, again), again);
        assert_eq!(plan.get(0).end, shortened.end);
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
        let (shortened, _) = split(&mut plan, 1_000);
        assert_eq!(plan.advanced(shortened.id, 600).cursor, 600);
        assert_eq!(
            plan.get(shortened.id).cursor,
            0,
            "advanced() changes nothing"
        );
        let w = plan.advance(shortened.id, 600, Some(500));
        assert_eq!(w.end, Some(499));
        assert!(
            w.cursor > w.end.unwrap(),
            "the walker sees it passed its end"
        );
    }
}
