//! The one composition root: how a [`SyncService`] is built from its parts,
//! the same way for the daemon, the one-shot modes and `--demo`. The client,
//! the store, the sync options, the token's source and the metrics go in;
//! what comes out is ready to run attempts (see `attempt`).

use reqwest::Url;

use crate::kommo::{ClientOptions, KommoClient};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, Target};
use crate::sync::{SyncOptions, Syncer};
use crate::token::TokenSource;

/// Everything a sync service is built from.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// The account's URL (`https://acme.kommo.com`, or the simulator's).
    pub base_url: Url,
    /// How the client behaves.
    pub client: ClientOptions,
    /// Where the mirror is.
    pub database: Target,
    /// How the sync walks.
    pub sync: SyncOptions,
    /// Where the token is read from at each attempt.
    pub token: TokenSource,
    /// Warn this many days before the token expires.
    pub token_expiry_warning_days: u32,
    /// Keep metrics of the attempts (served by the daemon).
    pub with_metrics: bool,
}

/// Why a service could not be built, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The client cannot be built from the settings (exit 2).
    #[error("configuration error: {0}")]
    Config(String),
    /// The mirror cannot be opened (exit 1).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything an attempt needs, built once per process.
#[derive(Clone)]
pub struct SyncService {
    pub(crate) syncer: Syncer,
    pub(crate) token_source: TokenSource,
    pub(crate) token_expiry_warning_days: u32,
    pub(crate) metrics: Option<Metrics>,
}

impl SyncService {
    /// Builds the client, opens (and migrates) the mirror and wires them
    /// with the token's source and, if asked, the metrics.
    pub async fn build(spec: ServiceSpec) -> Result<SyncService, BuildError> {
        let client = KommoClient::new(spec.base_url, spec.client)
            .map_err(|e| BuildError::Config(e.to_string()))?;
        let store = Store::open_target(spec.database).await?;
        let metrics = spec
            .with_metrics
            .then(|| Metrics::new(store.clone(), client.clone()));
        Ok(SyncService {
            syncer: Syncer::new(client, store, spec.sync),
            token_source: spec.token,
            token_expiry_warning_days: spec.token_expiry_warning_days,
            metrics,
        })
    }

    /// The mirror.
    pub fn store(&self) -> &Store {
        self.syncer.store()
    }

    /// Where the token is read from.
    pub fn token_source(&self) -> &TokenSource {
        &self.token_source
    }

    /// The metrics of the attempts, when kept.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }
}
