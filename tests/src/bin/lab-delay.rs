//! `lab-delay <queue> <delay-ms> <jitter-ms>`: holds every packet of NFQUEUE `<queue>` for
//! `delay ± jitter` milliseconds (uniform, so packets reorder; plus up to 5 ms of polling) and
//! then accepts it. The fault
//! harness (`legate_tests::netns`) runs one inside each host namespace, behind an iptables
//! NFQUEUE rule, where the kernel has no `sch_netem` for `tc ... netem delay`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;

const NAP: Duration = Duration::from_millis(5);

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let [queue, delay, jitter] = args[..] else {
        eprintln!("usage: lab-delay <queue> <delay-ms> <jitter-ms>");
        std::process::exit(2);
    };
    let queue = queue as u16;
    let mut q = nfq::Queue::open().expect("open a netfilter queue socket (root)");
    q.bind(queue).expect("bind the queue");
    q.set_copy_range(queue, 0).expect("metadata only");
    q.set_queue_max_len(queue, 65_536).expect("queue length");
    q.set_fail_open(queue, true).expect("fail open");
    q.set_nonblocking(true);
    // Held packets by (due, sequence).
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut held: HashMap<u64, nfq::Message> = HashMap::new();
    let mut seq = 0u64;
    let mut rng = rand::thread_rng();
    println!("ready");
    loop {
        loop {
            match q.recv() {
                Ok(mut msg) => {
                    let ms = (delay as i64 + rng.gen_range(-(jitter as i64)..=jitter as i64)).max(0) as u64;
                    msg.set_verdict(nfq::Verdict::Accept);
                    seq += 1;
                    due.push(Reverse((Instant::now() + Duration::from_millis(ms), seq)));
                    held.insert(seq, msg);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("netfilter queue: {e}"),
            }
        }
        let now = Instant::now();
        while let Some(Reverse((at, s))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            if let Some(msg) = held.remove(&s) {
                q.verdict(msg).expect("verdict");
            }
        }
        // nfq 0.2.5 exposes no descriptor to poll: nap until the next packet is due, at most
        // 5 ms (a packet arriving meanwhile waits up to that much more than its draw; twenty of
        // these napping 1 ms took a noticeable share of two cores from the agents).
        let nap = due.peek().map_or(NAP, |Reverse((at, _))| at.saturating_duration_since(now));
        std::thread::sleep(nap.min(NAP));
    }
}
