//! The kinds of record the simulated account holds (leads, contacts,
//! companies) and what differs between them on the wire: the list path,
//! the key under `_embedded`, the event `entity_type` and the names of
//! their deletion and restore events. [`ByKind`] keeps one value per kind
//! (a churn rate) without a `match` at every use.

use std::ops::{Index, IndexMut};

/// A kind of record with a listing of its own (`/api/v4/leads`,
/// `/api/v4/contacts`, `/api/v4/companies`), the same list semantics and the
/// same churn and faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    Lead,
    Contact,
    Company,
}

impl RecordKind {
    /// Every kind, leads first.
    pub const ALL: [RecordKind; 3] = [RecordKind::Lead, RecordKind::Contact, RecordKind::Company];

    /// The listing's path, e.g. `/api/v4/contacts`.
    pub fn path(self) -> &'static str {
        match self {
            RecordKind::Lead => "/api/v4/leads",
            RecordKind::Contact => "/api/v4/contacts",
            RecordKind::Company => "/api/v4/companies",
        }
    }

    /// The array under `_embedded` of its listing: `leads`, `contacts`,
    /// `companies`.
    pub fn list_key(self) -> &'static str {
        match self {
            RecordKind::Lead => "leads",
            RecordKind::Contact => "contacts",
            RecordKind::Company => "companies",
        }
    }

    /// The `entity_type` of its events: `lead`, `contact`, `company`.
    pub fn entity_type(self) -> &'static str {
        match self {
            RecordKind::Lead => "lead",
            RecordKind::Contact => "contact",
            RecordKind::Company => "company",
        }
    }

    /// The event type a deletion writes, e.g. `contact_deleted`.
    pub fn deleted_event(self) -> &'static str {
        match self {
            RecordKind::Lead => "lead_deleted",
            RecordKind::Contact => "contact_deleted",
            RecordKind::Company => "company_deleted",
        }
    }

    /// The event type a restore writes, e.g. `company_restored`.
    pub fn restored_event(self) -> &'static str {
        match self {
            RecordKind::Lead => "lead_restored",
            RecordKind::Contact => "contact_restored",
            RecordKind::Company => "company_restored",
        }
    }

    /// The kind whose listing is at `path`.
    pub(crate) fn of_path(path: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.path() == path)
    }

    fn index(self) -> usize {
        match self {
            RecordKind::Lead => 0,
            RecordKind::Contact => 1,
            RecordKind::Company => 2,
        }
    }
}

/// One `T` per [`RecordKind`].
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ByKind<T>([T; 3]);

impl<T> Index<RecordKind> for ByKind<T> {
    type Output = T;

    fn index(&self, kind: RecordKind) -> &T {
        &self.0[kind.index()]
    }
}

impl<T> IndexMut<RecordKind> for ByKind<T> {
    fn index_mut(&mut self, kind: RecordKind) -> &mut T {
        &mut self.0[kind.index()]
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn kinds_name_their_paths_keys_and_events() {
        assert_eq!(
            RecordKind::of_path("/api/v4/companies"),
            Some(RecordKind::Company)
        );
        assert_eq!(RecordKind::of_path("/api/v4/contacts/custom_fields"), None);
        assert_eq!(RecordKind::Contact.list_key(), "contacts");
        assert_eq!(RecordKind::Company.deleted_event(), "company_deleted");
        assert_eq!(RecordKind::Lead.restored_event(), "lead_restored");
        let mut by = ByKind::<usize>::default();
        by[RecordKind::Company] += 10;
        assert_eq!((by[RecordKind::Lead], by[RecordKind::Company]), (0, 10));
    }
}
