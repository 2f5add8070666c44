//! Remote runner repair through the runner controller against a real `sshd` in a network
//! namespace. The runner's container engine on the host is a stand-in `docker` (no container
//! can be killed inside the lab's hosts: they share this machine's dockerd) that keeps each
//! container's state in a file: the test "kills" the container by writing `exited`, and a
//! `crashloop` file makes every start die at once. The clock is moved by hand; the repair
//! policy is `health` of autogit.yml, as for the platform's services. Needs root, iproute2 and
//! openssh, else "skipping".

mod support;

use autogit_app::Event;
use autogit_app::runners::RunnerController;
use autogit_core::lifecycle::State;
use autogit_drivers::remote::ssh::trust;
use autogit_drivers::state::{RegistrationRow, Store};
use autogit_drivers::testing::netns::{SshLab, lab_available};
use std::sync::Arc;

fn standin_docker(state: &std::path::Path) -> String {
    format!(
        r#"#!/bin/sh
state={state}
c="$state/containers"; mkdir -p "$c"
after_start() {{ if [ -e "$state/crashloop" ]; then echo exited > "$c/$1"; else echo running > "$c/$1"; fi; }}
case "$1" in
  version) echo 27.3.1 ;;
  inspect) n=$4; [ -f "$c/$n" ] || {{ echo "Error: No such object: $n" >&2; exit 1; }}; cat "$c/$n" ;;
  start) echo "start $2" >> "$state/log"; after_start "$2"; echo "$2" ;;
  rm) echo "rm $3" >> "$state/log"; rm -f "$c/$3" ;;
  run) how=; case " $* " in *"engine-proxy.sock:/var/run/docker.sock "*) how=" via the proxy" ;; esac; echo "run $4$how" >> "$state/log"; after_start "$4"; echo 0123456789ab ;;
  network) [ "$2" = inspect ] && [ -e "$state/network-$3" ] && exit 0; [ "$2" = create ] && {{ eval "n=\${{$#}}"; : > "$state/network-$n"; echo "network create $n" >> "$state/log"; exit 0; }}; exit 1 ;;
  *) exit 1 ;;
esac
"#,
        state = state.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_runner_container_is_restarted_and_a_crash_loop_raises_the_flag() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(1).unwrap_or_else(|e| panic!("{e}"));
    let host = &lab.hosts[0];
    host.install_script("docker", &standin_docker(&host.dir));
    let containers = host.dir.join("containers");
    std::fs::create_dir_all(&containers).unwrap();
    let state_of = || std::fs::read_to_string(containers.join("autogit-runner-r1")).unwrap();
    let set_state = |s: &str| std::fs::write(containers.join("autogit-runner-r1"), s).unwrap();

    // The host's engine proxy: its socket is what the recreate mounts (this stand-in engine
    // only records the call).
    let proxy = host.dir.join("engine-proxy.sock");
    let _proxy = std::os::unix::net::UnixListener::bind(&proxy).unwrap();
    let data = tempfile::tempdir().unwrap();
    let yml = format!(
        "runners:\n  mode: always\n  isolation:\n    proxy_socket: {}\n  cpu:\n    - name: r1\n      host: {}\n      user: root\nhealth:\n  restart_budget:\n    max: 3\n    window: 10m\n  backoff:\n    initial: 10s\n    max: 1m\n",
        proxy.display(),
        host.addr
    );
    let settings = support::settings(&yml, "", data.path());
    let store = Store::open(&data.path().join("state.db")).unwrap();
    store
        .set_registration(&RegistrationRow {
            name: "r1".into(),
            host: host.addr.clone(),
            runner_id: 7,
            secret: "gitlab-runner-7-token".into(),
            state: "registered".into(),
            at: 0,
            message: String::new(),
        })
        .unwrap();
    let cfg = lab.ssh_config(data.path());
    trust(&cfg, &host.addr, false).await.unwrap();
    let (bus, clock) = support::bus_at(1_764_000_000);
    let mut rx = bus.subscribe();
    let runners =
        RunnerController::new(settings, bus.clone(), Arc::new(clock.clone())).with_ssh_config(cfg);
    let pass = || async {
        let r = runners.repair_pass().await.unwrap();
        assert_eq!(r.runners.len(), 1);
        let row = r.runners[0].clone();
        assert_eq!(row.error, None, "{row:?}");
        row.action
    };
    let record = || {
        let now = clock_now(&clock);
        store.records(now, 600).unwrap().remove("runner-r1")
    };

    // Running: nothing to do, nothing recorded.
    set_state("running");
    assert_eq!(pass().await, "healthy");
    assert!(record().is_none());

    // Killed: restarted over SSH, recorded as a repair of the service runner-r1.
    set_state("exited");
    assert_eq!(pass().await, "restart");
    assert_eq!(state_of().trim(), "running");
    let rec = record().unwrap();
    assert_eq!(rec.state, Some(State::Repairing));
    assert_eq!(rec.history.attempt, 1);
    assert_eq!(rec.history.repairs.len(), 1);
    clock.advance(5);
    assert_eq!(pass().await, "healthy");
    let rec = record().unwrap();
    assert_eq!(
        (rec.state, rec.history.attempt),
        (Some(State::Healthy), 0),
        "running again ends the streak"
    );

    // A crash loop: restart, wait out the backoff, recreate, then the budget (3 in 10 min)
    // is spent: FAILED and the human-intervention flag, after which it is left alone.
    std::fs::write(host.dir.join("crashloop"), "").unwrap();
    set_state("exited");
    clock.advance(1);
    assert_eq!(pass().await, "restart");
    clock.advance(1);
    assert_eq!(pass().await, "wait", "backoff before the next repair");
    clock.advance(10);
    assert_eq!(pass().await, "recreate");
    clock.advance(20);
    assert_eq!(pass().await, "flagged");
    let rec = record().unwrap();
    assert_eq!(rec.state, Some(State::Failed));
    assert!(rec.history.flagged, "{rec:?}");
    clock.advance(600);
    assert_eq!(pass().await, "hands_off");
    let log = std::fs::read_to_string(host.dir.join("log")).unwrap();
    let ops: Vec<&str> = log.lines().collect();
    assert_eq!(
        ops,
        [
            "start autogit-runner-r1",
            "start autogit-runner-r1",
            "network create autogit-runner-r1",
            "rm autogit-runner-r1",
            "run autogit-runner-r1 via the proxy"
        ],
        "two restarts and one recreate, nothing after the flag"
    );

    let events = support::drain(&mut rx);
    let repaired = events
        .iter()
        .filter(|e| matches!(e, Event::RunnerRepaired { .. }))
        .count();
    assert_eq!(repaired, 3, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::FlagRaised { service, .. } if service == "runner-r1")),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.notifies()));
}

fn clock_now(c: &autogit_app::ManualClock) -> u64 {
    use autogit_app::Clock;
    c.now()
}
