//! The kinds of record the mirror keeps (leads, contacts, companies), as
//! data: where Kommo lists each, its columns, how it shows deletions and
//! which links it carries. Everything that reads, stores or syncs records
//! takes an [`Entity`] and asks it; adding a kind (tasks, notes) is one
//! more constant here and one migration.

use super::field::Field;
use super::structure::{COMPANY_CUSTOM_FIELDS, CONTACT_CUSTOM_FIELDS, CUSTOM_FIELDS, ListEndpoint};

/// A link a record carries in `_embedded`, stored in a table of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `_embedded.contacts[] {id, is_main}`.
    Contacts,
    /// `_embedded.companies[] {id}`.
    Companies,
}

impl Link {
    /// The linked records' singular name: the link table is
    /// `{entity}_{plural}` with a `{singular}_id` column.
    pub fn singular(self) -> &'static str {
        match self {
            Link::Contacts => "contact",
            Link::Companies => "company",
        }
    }

    /// The plural, as in `_embedded` and in the link table's name.
    pub fn plural(self) -> &'static str {
        match self {
            Link::Contacts => "contacts",
            Link::Companies => "companies",
        }
    }
}

/// One kind of record.
#[derive(Debug, PartialEq, Eq)]
pub struct Entity {
    /// Its listing's path under `/api/v4/`, its key in `_embedded`, its
    /// table and its name in `sync.entities`: `leads`.
    pub plural: &'static str,
    /// `lead`: the prefix of its detail tables (`lead_field_values`,
    /// `lead_tags`) and of its id columns there (`lead_id`).
    pub singular: &'static str,
    /// Its scalar columns, in table order, each copied from the field of
    /// the same name.
    pub columns: &'static [Field],
    /// What its listings ask to be embedded (`with=`), when anything.
    pub with: Option<&'static str>,
    /// Kommo lists its deleted (restorable) records with `with=only_deleted`.
    pub lists_deleted: bool,
    /// The events of its deletions and restores.
    pub deleted_event: &'static str,
    pub restored_event: &'static str,
    /// Its listings, as messages name them: `the leads`, `the deleted leads`.
    pub listing_names: [&'static str; 2],
    /// The links it carries, each in a table `{singular}_{link}`.
    pub links: &'static [Link],
    /// The listing of its custom field definitions.
    pub custom_fields: ListEndpoint,
}

/// Leads: `GET /api/v4/leads`.
pub static LEADS: Entity = Entity {
    plural: "leads",
    singular: "lead",
    columns: &[
        Field::Name,
        Field::Price,
        Field::ResponsibleUserId,
        Field::GroupId,
        Field::StatusId,
        Field::PipelineId,
        Field::LossReasonId,
        Field::SourceId,
        Field::CreatedBy,
        Field::UpdatedBy,
        Field::Score,
        Field::AccountId,
        Field::LaborCost,
        Field::CreatedAt,
        Field::UpdatedAt,
        Field::ClosedAt,
        Field::ClosestTaskAt,
    ],
    // `contacts`: the lead's contact links, which Kommo leaves out unless
    // asked; `source_id` likewise.
    with: Some("contacts,source_id"),
    lists_deleted: true,
    deleted_event: "lead_deleted",
    listing_names: ["the leads", "the deleted leads"],
    restored_event: "lead_restored",
    links: &[Link::Contacts, Link::Companies],
    custom_fields: CUSTOM_FIELDS,
};

/// Contacts: `GET /api/v4/contacts`.
pub static CONTACTS: Entity = Entity {
    plural: "contacts",
    singular: "contact",
    columns: &[
        Field::Name,
        Field::FirstName,
        Field::LastName,
        Field::ResponsibleUserId,
        Field::GroupId,
        Field::CreatedBy,
        Field::UpdatedBy,
        Field::AccountId,
        Field::CreatedAt,
        Field::UpdatedAt,
        Field::ClosestTaskAt,
    ],
    with: None,
    lists_deleted: false,
    deleted_event: "contact_deleted",
    listing_names: ["the contacts", "the deleted contacts"],
    restored_event: "contact_restored",
    links: &[Link::Companies],
    custom_fields: CONTACT_CUSTOM_FIELDS,
};

/// Companies: `GET /api/v4/companies`.
pub static COMPANIES: Entity = Entity {
    plural: "companies",
    singular: "company",
    columns: &[
        Field::Name,
        Field::ResponsibleUserId,
        Field::GroupId,
        Field::CreatedBy,
        Field::UpdatedBy,
        Field::AccountId,
        Field::CreatedAt,
        Field::UpdatedAt,
        Field::ClosestTaskAt,
    ],
    with: None,
    lists_deleted: false,
    deleted_event: "company_deleted",
    listing_names: ["the companies", "the deleted companies"],
    restored_event: "company_restored",
    links: &[],
    custom_fields: COMPANY_CUSTOM_FIELDS,
};

/// Every kind, in the order a sync reads them.
pub static ENTITIES: [&Entity; 3] = [&LEADS, &CONTACTS, &COMPANIES];

/// A set of entities (what `sync.entities` names), met in [`ENTITIES`]
/// order whatever order it was named in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntitySet(u8);

impl EntitySet {
    /// Leads alone.
    pub const LEADS: EntitySet = EntitySet(1);
    /// Every entity.
    pub const ALL: EntitySet = EntitySet((1 << ENTITIES.len()) - 1);
    /// None.
    pub const NONE: EntitySet = EntitySet(0);

    fn bit(entity: &Entity) -> u8 {
        let index = ENTITIES
            .iter()
            .position(|e| e.plural == entity.plural)
            .unwrap_or(0);
        1 << index
    }

    /// This set and `entity`.
    pub fn with(self, entity: &Entity) -> EntitySet {
        EntitySet(self.0 | Self::bit(entity))
    }

    pub fn contains(self, entity: &Entity) -> bool {
        self.0 & Self::bit(entity) != 0
    }

    /// Its entities, in [`ENTITIES`] order.
    pub fn iter(self) -> impl Iterator<Item = &'static Entity> {
        ENTITIES.into_iter().filter(move |e| self.contains(e))
    }
}

impl Entity {
    /// The kind whose deletion or restore events have type `kind`, and
    /// whether `kind` is its deletion.
    pub fn of_event(kind: &str) -> Option<(&'static Entity, bool)> {
        ENTITIES.iter().find_map(|e| {
            (e.deleted_event == kind)
                .then_some((*e, true))
                .or((e.restored_event == kind).then_some((*e, false)))
        })
    }

    /// The kind named `name` in `sync.entities`.
    pub fn named(name: &str) -> Option<&'static Entity> {
        ENTITIES.iter().copied().find(|e| e.plural == name)
    }

    /// Its scalar column names, in table order.
    pub fn column_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns.iter().map(|f| f.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entity_has_an_updated_at_column_and_a_unique_name() {
        for e in ENTITIES {
            assert!(e.columns.contains(&Field::UpdatedAt), "{}", e.plural);
            assert_eq!(Entity::named(e.plural), Some(e));
        }
        assert_eq!(Entity::named("tasks"), None);
    }

    #[test]
    fn a_set_lists_its_entities_in_sync_order_and_events_name_their_entity() {
        let set = EntitySet::NONE.with(&COMPANIES).with(&LEADS);
        let names: Vec<&str> = set.iter().map(|e| e.plural).collect();
        assert_eq!(names, ["leads", "companies"]);
        assert!(!set.contains(&CONTACTS));
        assert_eq!(EntitySet::ALL.iter().count(), 3);
        assert_eq!(EntitySet::LEADS.iter().next(), Some(&LEADS));
        assert_eq!(Entity::of_event("contact_deleted"), Some((&CONTACTS, true)));
        assert_eq!(
            Entity::of_event("company_restored"),
            Some((&COMPANIES, false))
        );
        assert_eq!(Entity::of_event("lead_status_changed"), None);
    }

    #[test]
    fn lead_columns_are_the_leads_table_in_order() {
        let names: Vec<&str> = LEADS.column_names().collect();
        assert_eq!(names[0], "name");
        assert_eq!(names[16], "closest_task_at");
        assert_eq!(names.len(), 17);
    }
}
