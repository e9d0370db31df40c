//! A worker: one thread, one `Dispatcher`, one `ConnectionHandler` holding every listener and
//! every connection of that thread (Envoy's `WorkerImpl`).
//!
//! Started by `server::instance` with its listen sockets already bound. The main thread talks
//! to it only through the dispatcher's post queue ([`Worker::post`]); the posted closure runs on
//! the worker thread and finds the worker's handler in a thread-local ([`with_handler`]),
//! because the handler is `!Send` and cannot travel in the closure.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use log::{error, info};
use reactor::{Dispatcher, DispatcherStats, Poster, RunType};

use crate::network::connection_handler::ConnectionHandler;
use crate::network::listener::ListenerConfig;
use crate::stats::Store;
use crate::upstream::cluster_manager::ClusterManagerHandle;

thread_local! {
    /// The handler of the worker running on this thread.
    static HANDLER: RefCell<Option<Rc<RefCell<ConnectionHandler>>>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's worker handler (from a closure posted to the worker). Does
/// nothing on a thread without one.
pub fn with_handler(f: impl FnOnce(&mut ConnectionHandler)) {
    let handler = HANDLER.with(|h| h.borrow().clone());
    if let Some(handler) = handler {
        ConnectionHandler::run_on(&handler, f);
    }
}

/// One listener as a worker receives it: the shared config, its socket, its stats prefix.
pub struct WorkerListener {
    pub config: Arc<ListenerConfig>,
    pub socket: std::net::TcpListener,
    pub stat_prefix: String,
}

/// The main thread's handle on a running worker.
pub struct Worker {
    pub name: String,
    /// The worker's dispatcher stats (read by the admin's `/reactor` without involving the
    /// worker).
    pub dispatcher_stats: Arc<DispatcherStats>,
    poster: Poster,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts worker `index`: creates its dispatcher on the new thread, adds every listener,
    /// counts itself in `started`, and runs until told to exit.
    pub fn start(
        index: usize,
        listeners: Vec<WorkerListener>,
        stats: Store,
        cluster_manager: ClusterManagerHandle,
        started: Arc<AtomicUsize>,
    ) -> std::io::Result<Worker> {
        let name = format!("worker_{index}");
        let (tx, rx) = mpsc::channel::<std::io::Result<(Poster, Arc<DispatcherStats>)>>();
        let thread_name = name.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let dispatcher = match Dispatcher::new(&thread_name) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let clusters = cluster_manager.register_worker(&dispatcher, &stats);
                let handler =
                    ConnectionHandler::new(dispatcher.clone(), index, &thread_name, stats);
                handler.borrow_mut().set_cluster_manager(clusters);
                for l in listeners {
                    let result = handler.borrow_mut().add_listener(
                        l.config.clone(),
                        l.socket,
                        &l.stat_prefix,
                    );
                    if let Err(e) = result {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                HANDLER.with(|h| *h.borrow_mut() = Some(handler.clone()));
                started.fetch_add(1, Ordering::AcqRel);
                let _ = tx.send(Ok((dispatcher.poster(), dispatcher.stats())));
                debug!("{thread_name}: entering dispatch loop");
                if let Err(e) = dispatcher.run(RunType::RunUntilExit) {
                    error!("{thread_name}: dispatcher failed: {e}");
                }
                debug!("{thread_name}: dispatch loop exited");
                HANDLER.with(|h| *h.borrow_mut() = None);
                drop(handler);
            })?;
        let (poster, dispatcher_stats) = rx
            .recv()
            .map_err(|_| std::io::Error::other(format!("{name} died while starting")))??;
        info!("{name} started");
        Ok(Worker {
            name,
            dispatcher_stats,
            poster,
            thread: Some(thread),
        })
    }

    /// Runs `f` on the worker thread, with its handler.
    pub fn post(&self, f: impl FnOnce(&mut ConnectionHandler) + Send + 'static) {
        self.poster.post(Box::new(move || with_handler(f)));
    }

    /// A poster to the worker's dispatcher (for closures that use [`with_handler`]).
    pub fn poster(&self) -> Poster {
        self.poster.clone()
    }

    /// Stops the worker's loop and waits for the thread (connections still open are closed
    /// as the handler is dropped).
    pub fn stop(&mut self) {
        self.poster.exit();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
