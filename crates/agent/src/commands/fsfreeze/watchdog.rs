//! The fsfreeze watchdog (`--fsfreeze-timeout`, our addition): auto-thaw of a guest
//! left frozen.

use std::time::Instant;

use super::{duration_text, thaw_all};
use crate::agent::Agent;
use crate::log::Level;

/// The watchdog (`--fsfreeze-timeout`): thaws a guest that has stayed frozen longer
/// than the timeout, also when the agent started frozen. Returns at once without a
/// timeout, else when [`FreezeState::stop_watchdog`](super::FreezeState::stop_watchdog) is called. Run it on its own
/// thread.
pub fn run_watchdog(agent: &Agent) {
    let Some(limit) = agent.config.fsfreeze_timeout else {
        return;
    };
    let st = &agent.freeze;
    let mut inner = st.lock();
    if agent.is_frozen() && inner.frozen_since.is_none() {
        inner.frozen_since = Some(Instant::now());
    }
    while !inner.stop {
        let Some(since) = inner.frozen_since else {
            inner = st
                .shared
                .changed
                .wait(inner)
                .unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let now = Instant::now();
        if now < since + limit {
            inner = st
                .shared
                .changed
                .wait_timeout(inner, since + limit - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        drop(inner);
        let result = thaw_all(agent, false);
        // Logging is back on now that the frozen state is left.
        let limit = duration_text(limit);
        let msg = match &result {
            Ok(n) => format!(
                "fsfreeze watchdog: the guest stayed frozen longer than {limit}; thawed {n} filesystem(s)"
            ),
            Err(e) if !agent.is_frozen() => format!(
                "fsfreeze watchdog: the guest stayed frozen longer than {limit}; filesystems thawed, but: {e}"
            ),
            Err(e) => format!(
                "fsfreeze watchdog: the guest stayed frozen longer than {limit} and could not be thawed: {e}; retrying in {limit}"
            ),
        };
        agent.log.log(Level::Critical, &msg);
        inner = st.lock();
    }
}
