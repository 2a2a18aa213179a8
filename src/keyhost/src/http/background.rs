//! The background work of a serving keyhost besides answering: the audit sequencer's ticks,
//! which integrate queued audit entries into the log in batches (on PostgreSQL only the replica
//! holding the leader lock does).

use ed25519_dalek::SigningKey;

use crate::domain::sequencer;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{self, Connection};

/// The background sequencer of a keyhost (see `domain/sequencer.rs`); returns when `stop` fires.
/// `leader_db` is the PostgreSQL database (the leader lock needs a connection of its own);
/// `None` on SQLite, where it integrates through the keyhost's own connection.
pub async fn run_sequencer(
    state: AppState,
    leader_db: Option<store::Database>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let interval = state.sequencing().batch_interval;
    if interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let leader = std::sync::Arc::new(std::sync::Mutex::new(LeaderSlot::default()));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let st = state.clone();
        let (leader, leader_db) = (leader.clone(), leader_db.clone());
        let res = tokio::task::spawn_blocking(move || -> store::Result<()> {
            match leader_db {
                None => st
                    .with_db(|conn| {
                        sequencer::integrate_all(conn, st.keyhost_id(), st.signer())
                            .map(|_| ())
                            .map_err(ApiError::from)
                    })
                    .map_err(|e| store::Error::Schema(e.cause.map_or(e.message, String::from))),
                Some(database) => {
                    let mut slot = leader.lock().map_err(|_| store::Error::Schema("sequencer".into()))?;
                    slot.tick(&database, st.keyhost_id(), st.signer())
                }
            }
        })
        .await;
        if let Ok(Err(e)) = res {
            eprintln!("ghostpii keyhost: the audit sequencer could not integrate a batch (it retries): {e}");
        }
    }
}

/// A replica's claim to lead the sequencer on PostgreSQL: its own connection and whether it
/// holds the leader lock on it.
#[derive(Default)]
struct LeaderSlot {
    conn: Option<Connection>,
    leader: bool,
}

impl LeaderSlot {
    fn tick(&mut self, database: &store::Database, keyhost_id: &str, signer: &SigningKey) -> store::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(store::open(database)?);
            self.leader = false;
        }
        let conn = self.conn.as_mut().expect("set above");
        let res = (|| {
            if !self.leader {
                self.leader = conn.query_row(
                    &format!("SELECT pg_try_advisory_lock({})", store::postgres::SEQUENCER_LEADER),
                    (),
                    |r| r.get(0),
                )?;
            }
            if self.leader {
                sequencer::integrate_all(conn, keyhost_id, signer)?;
            }
            Ok(())
        })();
        if res.is_err() {
            // the connection (and with it the leader lock) may be gone: claim it afresh
            self.conn = None;
            self.leader = false;
        }
        res
    }
}
