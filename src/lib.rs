//! Koji: a self-hosted help-desk chat assistant.
//!
//! The core (this crate) owns identity, roles, sessions, recording, intents and entities,
//! admin commands, reports and storage. Channel adapters (`adapters/*`) translate platform
//! protocols to the channel-neutral types of `koji-channel` and back; they hold no rules.
//! See ARCHITECTURE.md for how a message flows through the parts.

pub mod app;
pub mod bench;
pub mod commands;
pub mod config;
pub mod console;
pub mod conversation;
pub mod directory;
pub mod discord;
pub mod domain;
pub mod email;
pub mod helpdesk;
pub mod metrics;
pub mod nlu;
pub mod oauth;
pub mod portal;
pub mod reports;
pub mod roles;
pub mod server;
pub mod slack;
pub mod store;
pub mod teams;

pub use app::App;
pub use config::Config;
pub use conversation::Core;
