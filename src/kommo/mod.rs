//! Everything about talking to Kommo's API v4: the client, the pacing of
//! requests, the typed errors and the shapes of the data received.

mod client;
mod counts;
pub mod entity;
mod error;
mod field;
mod lenient;
mod model;
mod pacer;
mod query;
mod record;
mod retry;
mod server_clock;
mod stage;
pub mod structure;

pub use client::{ClientOptions, KommoClient};
pub use counts::ResponseCounts;
pub use entity::{COMPANIES, CONTACTS, ENTITIES, Entity, EntitySet, LEADS, Link};
pub use error::KommoError;
pub use field::Field;
pub use model::{
    Column, EventPage, FieldValue, Record, RecordError, RecordEvent, RecordId, RecordPage,
    SkippedRecord,
};
pub use pacer::{Pacer, WINDOW_MARGIN, request_spacing};
pub use query::{EventQuery, Order, RecordQuery};
pub use stage::{LeadEventsPage, STATUS_CHANGED, StatusChange};
