//! Everything about talking to Kommo's API v4: the client, the pacing of
//! requests, the typed errors and the shapes of the data received.

mod client;
mod counts;
mod error;
mod lead;
mod lenient;
mod model;
mod pacer;
mod query;
mod retry;
mod server_clock;
mod stage;
pub mod structure;

pub use client::{ClientOptions, KommoClient};
pub use counts::ResponseCounts;
pub use error::KommoError;
pub use model::{
    Column, EventPage, FieldValue, Lead, LeadError, LeadEvent, LeadId, LeadPage, SCALAR_COLUMNS,
    SkippedLead,
};
pub use pacer::{Pacer, WINDOW_MARGIN, request_spacing};
pub use query::{EventQuery, LeadOrder, LeadQuery};
pub use stage::{LeadEventsPage, STATUS_CHANGED, StatusChange};
