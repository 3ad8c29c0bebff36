//! The questions the client asks Kommo: which records or events, in which
//! order, as query pairs; and the check that an answer fits its question.

use super::entity::{Entity, LEADS};
use super::{KommoError, RecordId, RecordPage};

/// The order of a listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// `order[updated_at]=asc`: keyset walks.
    #[default]
    UpdatedAsc,
    /// `order[updated_at]=desc`: the newest lead first.
    UpdatedDesc,
    /// `order[id]=asc`: stable inside one second, and for requests by id.
    IdAsc,
}

/// Which records to ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordQuery {
    /// The kind of record, whose listing is asked.
    pub entity: &'static Entity,
    /// `filter[updated_at][from]` (inclusive).
    pub updated_from: Option<i64>,
    /// `filter[updated_at][to]` (inclusive).
    pub updated_to: Option<i64>,
    /// 1-based page.
    pub page: u32,
    /// Leads per page (at most 250).
    pub limit: u32,
    /// List the deleted (restorable) leads instead (`with=only_deleted`).
    pub only_deleted: bool,
    /// The order asked for.
    pub order: Order,
    /// Only these ids (`filter[id][]`); empty for no id filter.
    pub ids: Vec<RecordId>,
}

impl Default for RecordQuery {
    fn default() -> Self {
        RecordQuery {
            entity: &LEADS,
            updated_from: None,
            updated_to: None,
            page: 0,
            limit: 0,
            only_deleted: false,
            order: Order::default(),
            ids: Vec::new(),
        }
    }
}

impl RecordQuery {
    pub(super) fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("page", self.page.to_string()),
            ("limit", self.limit.to_string()),
        ];
        if self.only_deleted {
            q.push(("with", "only_deleted,source_id".to_string()));
        } else if let Some(with) = self.entity.with {
            q.push(("with", with.to_string()));
        }
        if let Some(from) = self.updated_from {
            q.push(("filter[updated_at][from]", from.to_string()));
        }
        if let Some(to) = self.updated_to {
            q.push(("filter[updated_at][to]", to.to_string()));
        }
        for id in &self.ids {
            q.push(("filter[id][]", id.to_string()));
        }
        q.push(match self.order {
            Order::UpdatedAsc => ("order[updated_at]", "asc".into()),
            Order::UpdatedDesc => ("order[updated_at]", "desc".into()),
            Order::IdAsc => ("order[id]", "asc".into()),
        });
        q
    }
}

impl RecordQuery {
    /// Fails with [`KommoError::FilterIgnored`] when `page` holds a record this
    /// query's filter excludes: Kommo did not apply it, and no answer of the
    /// account can be trusted to mean what was asked.
    pub fn check_answer(&self, page: &RecordPage) -> Result<(), KommoError> {
        let ignored = |detail: String| Err(KommoError::FilterIgnored { detail });
        let (plural, singular) = (self.entity.plural, self.entity.singular);
        for record in &page.records {
            if !self.ids.is_empty() && !self.ids.contains(&record.id) {
                return ignored(format!(
                    "asked for {} {plural} by id, it answered with {singular} {}, not among them",
                    self.ids.len(),
                    record.id
                ));
            }
            let Some(updated_at) = record.updated_at else {
                continue;
            };
            if self.updated_from.is_some_and(|from| updated_at < from)
                || self.updated_to.is_some_and(|to| updated_at > to)
            {
                return ignored(format!(
                    "asked for {plural} updated from {} to {}, it answered with {singular} {} updated at {updated_at}",
                    self.updated_from
                        .map_or("the start".into(), |t| t.to_string()),
                    self.updated_to.map_or("now".into(), |t| t.to_string()),
                    record.id
                ));
            }
        }
        Ok(())
    }
}

/// Which lead events to ask for (`GET /api/v4/events`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventQuery {
    /// Event types, e.g. `lead_restored`.
    pub types: Vec<&'static str>,
    /// `filter[created_at][from]` (inclusive).
    pub created_from: i64,
    /// `filter[created_at][to]` (inclusive): a fixed upper bound keeps the
    /// set of events still while it is paged by offset.
    pub created_to: i64,
    /// 1-based page.
    pub page: u32,
    /// Events per page (at most 100).
    pub limit: u32,
}

impl EventQuery {
    pub(super) fn to_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("page", self.page.to_string()),
            ("limit", self.limit.to_string()),
            ("filter[type]", self.types.join(",")),
            ("filter[created_at][from]", self.created_from.to_string()),
            ("filter[created_at][to]", self.created_to.to_string()),
        ]
    }
}
