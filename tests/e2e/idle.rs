//! An idle gateway costs next to no CPU: the epoch ticker sleeps while no
//! plugin instance is alive, and the serving lanes stop polling once their
//! idle-poll window has passed.

use crate::support::gateway::{Gateway, Setup, hello, run, tollgate};
use crate::support::mock::Mock;
use std::time::Duration;

/// What the gateway may spend in a second of doing nothing. A ticker that
/// never sleeps spends about 9 ms (200 wake-ups), a lane that never stops
/// polling a whole second. (The embedded ledger's saver would add its two
/// looks a second for changes; these tests keep counts in memory.)
const IDLE_BUDGET: Duration = Duration::from_millis(3);

async fn cpu_over_a_quiet_second(gateway: &Gateway) -> Duration {
    // Past the poll window and the ticker's last tick.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The quietest of three seconds: the other tests share the machine, and
    // a busy machine can stretch one second's housekeeping. A ticker that
    // never sleeps, or a lane that never stops polling, costs every second.
    let mut quietest = Duration::MAX;
    for _ in 0..3 {
        let before = gateway.cpu_time();
        tokio::time::sleep(Duration::from_secs(1)).await;
        // A thread that ended takes its time with it: never below zero.
        quietest = quietest.min(gateway.cpu_time().saturating_sub(before));
    }
    quietest
}

#[tokio::test]
async fn a_gateway_that_has_served_goes_quiet() {
    let mock = Mock::start("alpha").await;
    let gateway = Setup::new()
        .provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        // A long window: were the lanes to go on polling, it would show.
        .env("TOLLGATE_IDLE_POLL_US", "50000")
        .env("TOLLGATE_LEDGER", "memory")
        .start();
    for _ in 0..20 {
        assert_eq!(gateway.chat(hello("alpha-chat")).await.status, 200);
    }
    let spent = cpu_over_a_quiet_second(&gateway).await;
    assert!(
        spent < IDLE_BUDGET,
        "an idle gateway used {spent:?} of CPU in a second"
    );
    // It still serves, with the deadline ticker woken again.
    assert_eq!(gateway.chat(hello("alpha-chat")).await.status, 200);
}

#[test]
fn a_bad_idle_poll_setting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, output) = run(tollgate("serve", dir.path()).env("TOLLGATE_IDLE_POLL_US", "soon"));
    assert!(!ok);
    assert!(
        output.contains("TOLLGATE_IDLE_POLL_US=soon is not a whole number"),
        "{output}"
    );
}
