//! Gossip under packet loss: 20 agents in network namespaces (`legate_tests::netns`), every one
//! dropping 10 % of what the others send it and holding the rest 0 to 100 ms (50 ± 50 ms). SWIM's indirect probes and refutation must keep
//! every running member alive (no flapping: no agent ever logs a member failed, none ever lists
//! one as failed) for the whole run; a member killed during the loss must be marked failed by
//! every other agent within the SWIM bound.

use std::time::{Duration, Instant};

use legate_tests::netns::Lab;
use legate_tests::{retry_until, AgentProcess};
use reqwest::Client;

const AGENTS: usize = 20;

/// Members (name, status) as one agent lists them; Serf's statuses: 1 alive, 4 failed.
async fn members(c: &Client, a: &AgentProcess) -> Option<Vec<(String, u64)>> {
    let v: serde_json::Value = c.get(a.url("/v1/agent/members")).send().await.ok()?.json().await.ok()?;
    Some(
        v.as_array()?
            .iter()
            .map(|m| (m["Name"].as_str().unwrap_or("").to_string(), m["Status"].as_u64().unwrap_or(0)))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_agents_do_not_flap_under_packet_loss_and_detect_a_killed_member() {
    let Some(lab) = Lab::new("gs", 23, AGENTS) else { return };
    let c = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..AGENTS).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut agents: Vec<Option<AgentProcess>> = (0..AGENTS)
        .map(|i| {
            let ip = lab.ip(i);
            let mut args = legate_tests::cluster_agent_args(
                &ip,
                &format!("g{:02}", i + 1),
                dirs[i].path().to_str().unwrap(),
                false,
                &lab.ip(0),
            );
            if i == 0 {
                args.extend(["-server", "-bootstrap"].map(String::from));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Some(lab.start(i, &args, &[]))
        })
        .collect();
    for a in agents.iter().flatten() {
        retry_until(Duration::from_secs(60), "every agent sees 20 alive members", || async {
            let m = members(&c, a).await?;
            (m.len() == AGENTS && m.iter().all(|(_, s)| *s == 1)).then_some(())
        })
        .await;
    }

    lab.loss(10);
    lab.delay(50, 50);
    // The delay is in effect: TCP connects from host 1 to host 2's API wait for a SYN and its
    // answer, each held 0-100 ms.
    let target = agents[1].as_ref().unwrap().url("/v1/status/leader");
    let mut connects: Vec<f64> = (0..9)
        .filter_map(|_| {
            let out = lab.exec(0, &["curl", "-s", "-o", "/dev/null", "-m", "5", "-w", "%{time_connect}", &target]);
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        })
        .collect();
    connects.sort_by(f64::total_cmp);
    assert!(connects.len() >= 5 && connects[connects.len() / 2] > 0.04, "connect times with the delay: {connects:?}");
    eprintln!("TCP connect times between two hosts under the delay (s): {connects:?}");
    // The soak: 25 s in the suite, CHAOS_SECONDS in scripts/chaos.sh (120 and more).
    let seconds: u64 = std::env::var("CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(25);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut polls = 0;
    while Instant::now() < until {
        for (i, a) in agents.iter().flatten().enumerate() {
            if let Some(m) = members(&c, a).await {
                polls += 1;
                let not_alive: Vec<_> = m.iter().filter(|(_, s)| *s != 1).collect();
                assert!(not_alive.is_empty(), "g{:02} lists running members as not alive: {not_alive:?}", i + 1);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let flaps: Vec<String> = agents
        .iter()
        .flatten()
        .flat_map(|a| {
            a.output().lines().filter(|l| l.contains("gossip: member failed")).map(String::from).collect::<Vec<_>>()
        })
        .collect();
    assert!(flaps.is_empty(), "members failed while their processes ran: {flaps:#?}");

    // A member killed while the loss goes on: every other agent marks it failed within the SWIM
    // bound: memberlist's suspicion timeout for 20 members (suspicion_mult 4 x log10(20) x 1 s
    // probe interval = 5.2 s), plus the wait to be probed at all (each of 19 members probes a
    // shuffled round: nobody picks it in a given interval with p = (18/19)^19 = 0.36, in 6 with
    // p = 0.2 %), the failed probe's interval and one to spread the verdict: 13.2 s.
    let mut victim = agents[AGENTS - 1].take().unwrap();
    victim.signal(libc::SIGKILL);
    victim.wait_exit(Duration::from_secs(5));
    let killed_at = Instant::now();
    let name = format!("g{AGENTS:02}");
    for a in agents.iter().flatten() {
        retry_until(Duration::from_secs(30), "the killed member marked failed", || async {
            let m = members(&c, a).await?;
            m.iter().any(|(n, s)| *n == name && *s == 4).then_some(())
        })
        .await;
    }
    let detected = killed_at.elapsed();
    lab.heal();
    eprintln!(
        "{AGENTS} agents, 10 % loss and 50 ± 50 ms delay for {seconds} s: {polls} member lists polled, 0 flaps; the killed member failed everywhere after {detected:?}"
    );
    // The bound is held in the long run (scripts/chaos.sh, one scenario at a time); in the suite
    // the other scenarios share the two cores and delay the agents' probes, so there the killed
    // member must only be found within 30 s.
    let bound = if std::env::var("CHAOS_SECONDS").is_ok() { 13_200 } else { 30_000 };
    assert!(
        detected < Duration::from_millis(bound),
        "detection took {detected:?}, past {bound} ms (SWIM bound: 13.2 s)"
    );
    // Nobody else failed meanwhile.
    for a in agents.iter().flatten() {
        let m = members(&c, a).await.expect("members");
        let wrong: Vec<_> = m.iter().filter(|(n, s)| *n != name && *s != 1).collect();
        assert!(wrong.is_empty(), "{wrong:?}");
    }
}
