//! The DNS path of the cluster manager end to end, with real threads, a real reactor and real
//! sockets on 127.0.0.1: a STRICT_DNS cluster of `localhost` endpoints is resolved by the
//! resolver thread, the snapshot reaches two worker threads through their dispatchers' post
//! queues, and each worker connects to the host it picked, which accepts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nuncio::config;
use nuncio::stats::Store;
use nuncio::upstream::cluster_manager::ClusterManager;
use reactor::{Dispatcher, RunType};

fn cluster_yaml(kind: &str, ports: &[u16]) -> String {
    let endpoints: String = ports
        .iter()
        .map(|p| {
            format!(
                "        - endpoint: {{ address: {{ socket_address: {{ address: localhost, port_value: {p} }} }} }}\n"
            )
        })
        .collect();
    format!(
        "static_resources:\n  clusters:\n  - name: backend\n    type: {kind}\n    dns_lookup_family: V4_ONLY\n    dns_refresh_rate: 0.05s\n    lb_policy: ROUND_ROBIN\n    load_assignment:\n      cluster_name: backend\n      endpoints:\n      - lb_endpoints:\n{endpoints}"
    )
}

/// Accepts connections and answers each with its own port, until the test ends.
fn upstream() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut byte = [0u8; 1];
            if stream.read_exact(&mut byte).is_err() || byte[0] == b'q' {
                return;
            }
            let _ = stream.write_all(&port.to_be_bytes());
        }
    });
    (port, thread)
}

fn stop(port: u16, thread: std::thread::JoinHandle<()>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"q").unwrap();
    thread.join().unwrap();
}

fn ask(port: u16) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"?").unwrap();
    let mut answer = [0u8; 2];
    s.read_exact(&mut answer).unwrap();
    u16::from_be_bytes(answer)
}

#[test]
fn strict_dns_localhost_cluster_reaches_workers_and_connects() {
    let (port_a, thread_a) = upstream();
    let (port_b, thread_b) = upstream();
    let bootstrap = config::load_str(&cluster_yaml("STRICT_DNS", &[port_a, port_b])).unwrap();
    let store = Store::new();
    let cm = ClusterManager::new(&bootstrap.static_resources.clusters, &store).unwrap();
    let handle = cm.handle();

    let (tx, rx) = mpsc::channel();
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let handle = handle.clone();
            let worker_store = store.for_worker();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let dispatcher = Dispatcher::new(&format!("worker_{i}")).unwrap();
                let tlcm = handle.register_worker(&dispatcher, &worker_store);
                let backend = tlcm.get("backend").unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                while backend.host_set().len() < 2 {
                    assert!(
                        Instant::now() < deadline,
                        "no DNS update reached worker_{i}"
                    );
                    dispatcher.run(RunType::NonBlock).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
                // Round robin over both hosts; each answers with its own port.
                let answers: Vec<u16> = (0..4)
                    .map(|_| {
                        let host = backend.choose_host().unwrap();
                        backend.stats().upstream_cx_total.inc();
                        ask(host.address().port())
                    })
                    .collect();
                tx.send(answers).unwrap();
                // Keep applying refreshes for a while: the same answer never rebuilds.
                let updates = backend.updates_received();
                for _ in 0..20 {
                    dispatcher.run(RunType::NonBlock).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
                assert_eq!(backend.updates_received(), updates);
            })
        })
        .collect();
    for _ in 0..2 {
        let mut answers = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        answers.sort();
        let mut expected = vec![port_a, port_a, port_b, port_b];
        expected.sort();
        assert_eq!(answers, expected);
    }
    for w in workers {
        w.join().unwrap();
    }
    let (info, hosts) = handle.clusters().remove(0);
    assert_eq!(info.stats.upstream_cx_total.value(), 8);
    assert!(info.stats.update_attempt.value() >= 2);
    assert_eq!(info.stats.update_failure.value(), 0);
    assert_eq!(hosts.len(), 2);
    drop(cm);
    stop(port_a, thread_a);
    stop(port_b, thread_b);
}

#[test]
fn logical_dns_uses_the_first_address_only() {
    let (port, thread) = upstream();
    let bootstrap = config::load_str(&cluster_yaml("LOGICAL_DNS", &[port])).unwrap();
    let store = Store::new();
    let cm = ClusterManager::new(&bootstrap.static_resources.clusters, &store).unwrap();
    assert!(cm.wait_for_initial_dns(Duration::from_secs(10)));
    let dispatcher = Dispatcher::new("worker_logical").unwrap();
    let tlcm = cm
        .handle()
        .register_worker(&dispatcher, &store.for_worker());
    let backend = tlcm.get("backend").unwrap();
    assert_eq!(backend.host_set().len(), 1);
    let host = backend.choose_host().unwrap();
    assert_eq!(host.address(), format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(ask(port), port);
    drop(cm);
    stop(port, thread);
}
