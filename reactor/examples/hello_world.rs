//! The reactor's port of libevent's classic `hello-world.c` sample server.
//!
//!     cargo run --release -p reactor --example hello_world -- [PORT]     # default 9995
//!     nc 127.0.0.1 9995                                                  # prints Hello, World!
//!
//! Every client that connects to 127.0.0.1:PORT receives exactly `Hello, World!\n`. When the
//! answer has been flushed the server prints `flushed answer` and closes that connection. On
//! SIGINT it prints `Caught an interrupt signal; exiting cleanly in two seconds.`, stops
//! accepting, and two seconds later leaves the loop, prints `done` and exits with status 0.
//! (One line goes to stderr at start, `hello_world: listening on 127.0.0.1:PORT`, so that a
//! caller that passed port 0 learns the port.)
//!
//! What it shows: a level-triggered listener, edge-triggered connections, a connection closing
//! itself from its own callback through `deferred_delete`, a signal delivered as an ordinary
//! event, and a timer that ends the loop.

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use reactor::{Dispatcher, FileEvent, FileReadyType, FileTriggerType, RunType, Signal, Timer};
use slab::Slab;

const MESSAGE: &[u8] = b"Hello, World!\n";
const DEFAULT_PORT: u16 = 9995;

/// One accepted client: the answer is written, then the connection closes itself.
struct Connection {
    // Field order: the event unregisters before the socket closes.
    event: Option<FileEvent>,
    stream: TcpStream,
    written: usize,
}

type Connections = Rc<RefCell<Slab<Connection>>>;

/// The write callback of connection `id` (libevent's `conn_writecb`).
fn on_write(dispatcher: &Dispatcher, conns: &Connections, id: usize) {
    let mut all = conns.borrow_mut();
    let Some(conn) = all.get_mut(id) else { return };
    while conn.written < MESSAGE.len() {
        match (&conn.stream).write(&MESSAGE[conn.written..]) {
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return, // wait for the next edge
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("hello_world: write failed: {e}");
                break;
            }
        }
    }
    if conn.written == MESSAGE.len() {
        println!("flushed answer");
    }
    // Close from inside our own callback: the object (and this running closure, owned by its
    // FileEvent) is dropped at the end of the loop iteration.
    let conn = all.remove(id);
    dispatcher.deferred_delete(Box::new(conn));
}

/// The listener's callback (libevent's `listener_cb`): accept every pending client.
fn on_accept(dispatcher: &Dispatcher, listener: &TcpListener, conns: &Connections) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("hello_world: accept failed: {e}");
                return;
            }
        };
        if let Err(e) = start_connection(dispatcher, conns, stream) {
            eprintln!("hello_world: cannot set up a connection: {e}");
        }
    }
}

fn start_connection(
    dispatcher: &Dispatcher,
    conns: &Connections,
    stream: TcpStream,
) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let fd = stream.as_raw_fd();
    let id = conns.borrow_mut().insert(Connection {
        event: None,
        stream,
        written: 0,
    });
    let (d, c) = (dispatcher.clone(), conns.clone());
    let event =
        dispatcher.create_file_event(fd, FileTriggerType::Edge, FileReadyType::WRITE, move |_| {
            on_write(&d, &c, id)
        });
    match event {
        Ok(event) => {
            conns.borrow_mut()[id].event = Some(event);
            Ok(())
        }
        Err(e) => {
            conns.borrow_mut().remove(id);
            Err(e)
        }
    }
}

fn run(port: u16) -> io::Result<()> {
    let dispatcher = Dispatcher::new("main_thread")?;
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let conns: Connections = Rc::new(RefCell::new(Slab::new()));

    let listener_fd = listener.as_raw_fd();
    let (d, c) = (dispatcher.clone(), conns.clone());
    let listener_event = dispatcher.create_file_event(
        listener_fd,
        FileTriggerType::Level,
        FileReadyType::READ,
        move |_| on_accept(&d, &listener, &c),
    )?;
    // Shared with the signal callback, which drops it to stop accepting (the listening socket,
    // owned by the callback, closes with it).
    let listener_event = Rc::new(RefCell::new(Some(listener_event)));

    let exit_timer: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(None));
    let (d, l, t) = (
        dispatcher.clone(),
        listener_event.clone(),
        exit_timer.clone(),
    );
    let _sigint = dispatcher.listen_for_signal(Signal::SIGINT, move || {
        // Stop accepting first: whoever reads the line below may rely on it.
        l.borrow_mut().take();
        println!("Caught an interrupt signal; exiting cleanly in two seconds.");
        let d2 = d.clone();
        let timer = d.create_timer(move || d2.exit());
        timer.enable(Duration::from_secs(2));
        *t.borrow_mut() = Some(timer);
    })?;

    eprintln!("hello_world: listening on {local}");
    dispatcher.run(RunType::Block)?;
    println!("done");
    Ok(())
}

fn main() -> ExitCode {
    let port = match std::env::args().nth(1) {
        None => DEFAULT_PORT,
        Some(arg) => match arg.parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                eprintln!("hello_world: not a port: {arg}\nusage: hello_world [PORT]");
                return ExitCode::from(2);
            }
        },
    };
    match run(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello_world: {e}");
            ExitCode::FAILURE
        }
    }
}
