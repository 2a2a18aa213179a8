//! What the keyhost knows and decides, over a [`crate::store`] connection (no HTTP, no
//! process-wide state):
//!
//! - who: `identities`, `tokens`, `orgs` (shares, join-domain members, delegations, audit readers);
//! - what: `datasets`, `columns` (key epochs), `logical` (column types), `join_domains`,
//!   `populations`;
//! - may: `grants`, `grant_params`, `policy`, `match_constants`, `moments`, `limits`;
//! - how much: `budget` and `dp/` (privacy budgets and noise), `linear_audit/` (the disclosure
//!   rule for exact answers), `score_span`;
//! - the log: `audit` (entries, hash chain), `sequencer` (integrates queued entries), `merkle`
//!   and `checkpoint` (signed tree heads), `verification` (the chain, against a checkpoint), `auth_audit` and
//!   `auth_failures` (refused authentications: audited, bounded; counted per address).

pub mod audit;
pub mod auth_audit;
pub mod auth_failures;
pub mod budget;
pub mod checkpoint;
pub mod columns;
pub mod datasets;
pub mod dp;
pub mod grant_params;
pub mod grants;
pub mod identities;
pub mod join_domains;
pub mod limits;
pub mod linear_audit;
pub mod logical;
pub mod match_constants;
pub mod merkle;
pub mod moments;
pub mod orgs;
pub mod policy;
pub mod populations;
pub mod score_span;
pub mod sequencer;
pub mod tokens;
pub mod verification;
