//! Dispatch cost, measured on a ring of socketpairs (the workload of
//! `../shared/bench/reactor/libevent_pingpong.c`, so the two can run side by side).
//!
//!     cargo run --release -p reactor --example pingpong -- [--pairs N] [--active A] [--writes W] [--edge]
//!
//! N non-blocking AF_UNIX stream socketpairs; a read event (level-triggered, or edge with
//! `--edge`) on end 1 of each. A one-byte tokens are seeded evenly around the ring. The callback
//! of pair i reads one byte (edge: reads until WouldBlock, forwarding each byte) and writes one
//! byte into end 0 of pair (i+1)%N, until W writes have been made in total; then it exits the
//! loop. Prints one line: `backend=epoll pairs=N active=A writes=W events=E seconds=S
//! ns_per_event=X`.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use reactor::{Dispatcher, FileEvent, FileReadyType, FileTriggerType, RunType};

struct Args {
    pairs: usize,
    active: usize,
    writes: u64,
    edge: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        pairs: 1000,
        active: 100,
        writes: 1_000_000,
        edge: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        };
        match a.as_str() {
            "--pairs" => args.pairs = value("--pairs")? as usize,
            "--active" => args.active = value("--active")? as usize,
            "--writes" => args.writes = value("--writes")?,
            "--edge" => args.edge = true,
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    if args.pairs == 0 || args.active == 0 || args.active > args.pairs {
        return Err("need 0 < --active <= --pairs".into());
    }
    Ok(args)
}

/// What every callback shares.
struct Ring {
    /// (end 0, end 1) of each pair.
    pairs: Vec<(UnixStream, UnixStream)>,
    writes: Cell<u64>,
    writes_goal: u64,
    events: Cell<u64>,
    edge: bool,
    dispatcher: Dispatcher,
}

impl Ring {
    /// The read callback of pair `i`.
    fn on_read(&self, i: usize) {
        self.events.set(self.events.get() + 1);
        let mut buf = [0u8; 64];
        let want = if self.edge { buf.len() } else { 1 };
        loop {
            let n = match (&self.pairs[i].1).read(&mut buf[..want]) {
                Ok(0) | Err(_) => return, // WouldBlock (or EOF, which the ring never produces)
                Ok(n) => n,
            };
            for _ in 0..n {
                if self.writes.get() >= self.writes_goal {
                    self.dispatcher.exit();
                    return;
                }
                let next = &self.pairs[(i + 1) % self.pairs.len()].0;
                if let Ok(1) = (&*next).write(b"x") {
                    self.writes.set(self.writes.get() + 1);
                }
            }
            if !self.edge {
                return;
            }
        }
    }
}

fn run(args: &Args) -> io::Result<()> {
    let dispatcher = Dispatcher::new("pingpong")?;
    let mut pairs = Vec::with_capacity(args.pairs);
    for _ in 0..args.pairs {
        let (a, b) = UnixStream::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        pairs.push((a, b));
    }
    let ring = Rc::new(Ring {
        pairs,
        writes: Cell::new(0),
        writes_goal: args.writes,
        events: Cell::new(0),
        edge: args.edge,
        dispatcher: dispatcher.clone(),
    });
    let trigger = if args.edge {
        FileTriggerType::Edge
    } else {
        FileTriggerType::Level
    };
    let events: Vec<FileEvent> = (0..args.pairs)
        .map(|i| {
            let r = ring.clone();
            let fd = ring.pairs[i].1.as_raw_fd();
            dispatcher.create_file_event(fd, trigger, FileReadyType::READ, move |_| r.on_read(i))
        })
        .collect::<io::Result<_>>()?;

    let start = Instant::now();
    for k in 0..args.active {
        if let Ok(1) = (&ring.pairs[k * args.pairs / args.active].0).write(b"x") {
            ring.writes.set(ring.writes.get() + 1);
        }
    }
    dispatcher.run(RunType::Block)?;
    let seconds = start.elapsed().as_secs_f64();
    let events_run = ring.events.get();
    println!(
        "backend=epoll pairs={} active={} writes={} events={} seconds={:.3} ns_per_event={:.1}",
        args.pairs,
        args.active,
        ring.writes.get(),
        events_run,
        seconds,
        seconds * 1e9 / events_run.max(1) as f64
    );
    drop(events); // unregister before the sockets close
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "pingpong: {e}\nusage: pingpong [--pairs N] [--active A] [--writes W] [--edge]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pingpong: {e}");
            ExitCode::FAILURE
        }
    }
}
