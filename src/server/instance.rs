//! The server's main thread: startup, the main dispatch loop, drain and exit (Envoy's
//! `InstanceImpl::run` with its `RunHelper`).
//!
//! [`run`] is the whole life of the process, in order:
//! 1. load the config (the file, or the embedded default) and build every listener's filter
//!    factories (also all `--mode validate` does, before reporting);
//! 2. raise the fd limit, bind every listener's sockets (one per worker with reuse_port);
//! 3. create the main dispatcher, the admin listener on it, and the SIGTERM/SIGINT handlers;
//! 4. start the workers, each adding every listener (`/ready` turns 200 when all have);
//! 5. run the main dispatcher until exit is asked for.
//!
//! Shutdown: the first SIGTERM or SIGINT drains: `/ready` turns 503, every worker stops
//! accepting and reports once its last connection is gone; the process exits 0 when all have
//! (or when `--drain-time-s` runs out). A second signal exits at once. A panic on any thread
//! exits the process with status 70 (see `main.rs`): never half alive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};
use reactor::{Dispatcher, RunType, Signal};

use super::drain_manager::DrainManager;
use super::listener_manager::{bind_sockets, build_listeners};
use super::options::{Mode, Options};
use super::worker::{Worker, WorkerListener};
use crate::access_log::AccessLogManager;
use crate::admin::{AdminServer, ServerState};
use crate::config::{self, Bootstrap};
use crate::filters::FactoryContext;
use crate::network::connection_handler::ConnectionHandler;
use crate::network::listener::{stat_address, ListenerConfig};
use crate::stats::{ImportMode, Store};
use crate::upstream::cluster_manager::ClusterManager;

/// The config used without `-c`: an HTTP listener on 127.0.0.1:10000 (a direct response), an
/// echo listener on 127.0.0.1:10001 and the admin endpoint on 127.0.0.1:9901.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/default.yaml");

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The config is wrong (the message names the field).
    Config(config::ConfigError),
    /// A listener could not be bound, a thread could not start, ...
    Io(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Io(e) => f.write_str(e),
        }
    }
}

impl From<config::ConfigError> for StartError {
    fn from(e: config::ConfigError) -> Self {
        StartError::Config(e)
    }
}

/// The config and everything built from it, before anything is bound.
pub struct Built {
    pub bootstrap: Bootstrap,
    pub listeners: Vec<Arc<ListenerConfig>>,
    pub stats: Store,
    pub worker_stats: Vec<Store>,
    /// Every access log file and their flush thread (`--file-flush-interval-msec`).
    pub access_log_manager: AccessLogManager,
    /// The admin endpoint's own access logs (`admin.access_log`).
    pub admin_access_logs: Vec<crate::access_log::AccessLog>,
}

/// Loads and builds the config for `concurrency` workers (steps 1 of `run`; all of
/// `--mode validate`).
pub fn build(options: &Options) -> Result<Built, StartError> {
    let bootstrap = match &options.config_path {
        Some(path) => config::load_file(path)?,
        None => config::load_str(DEFAULT_CONFIG)?,
    };
    let stats = Store::new();
    let worker_stats: Vec<Store> = (0..options.concurrency)
        .map(|_| stats.for_worker())
        .collect();
    let access_log_manager = AccessLogManager::new(options.file_flush_interval)
        .map_err(|e| StartError::Io(format!("cannot start the access log flush thread: {e}")))?;
    let admin_access_logs = match &bootstrap.admin {
        Some(admin) => crate::admin::access_log::build(admin, &access_log_manager)?,
        None => Vec::new(),
    };
    let listeners = {
        let cx = FactoryContext {
            access_log_manager: &access_log_manager,
            bootstrap: &bootstrap,
            stats: &stats,
            worker_stats: &worker_stats,
        };
        build_listeners(&cx)?
    };
    Ok(Built {
        bootstrap,
        listeners,
        stats,
        worker_stats,
        access_log_manager,
        admin_access_logs,
    })
}

/// The name shown for the config in messages.
fn config_name(options: &Options) -> String {
    options
        .config_path
        .as_ref()
        .map_or("<embedded default>".to_string(), |p| {
            p.display().to_string()
        })
}

/// `--mode validate`: builds everything, binds nothing. Returns the exit status.
pub fn validate(options: &Options) -> i32 {
    match build(options) {
        Ok(_) => {
            println!("configuration '{}' OK", config_name(options));
            0
        }
        Err(e) => {
            eprintln!(
                "error initializing configuration '{}': {e}",
                config_name(options)
            );
            1
        }
    }
}

/// Runs the server until it is told to stop; returns the process exit status.
pub fn run(options: &Options) -> i32 {
    if options.mode == Mode::Validate {
        return validate(options);
    }
    match serve(options) {
        Ok(()) => 0,
        Err(e) => {
            error!(
                "error initializing configuration '{}': {e}",
                config_name(options)
            );
            eprintln!(
                "error initializing configuration '{}': {e}",
                config_name(options)
            );
            1
        }
    }
}

fn serve(options: &Options) -> Result<(), StartError> {
    // 1. Config.
    let built = build(options)?;
    info!(
        "nuncio {} starting: {} listener(s), {} worker(s)",
        env!("CARGO_PKG_VERSION"),
        built.listeners.len(),
        options.concurrency
    );

    let cluster_manager =
        ClusterManager::new(&built.bootstrap.static_resources.clusters, &built.stats)
            .map_err(|e| StartError::Io(format!("cluster manager: {e}")))?;
    // Envoy's cluster warming: listeners open once every DNS name has been answered once (a
    // failed lookup counts as an answer), so the first connections find their hosts.
    if !cluster_manager.wait_for_initial_dns(INITIAL_DNS_TIMEOUT) {
        warn!(
            "DNS clusters still unresolved after {}s: starting anyway",
            INITIAL_DNS_TIMEOUT.as_secs()
        );
    }

    // 2. Sockets.
    raise_fd_limit();
    let workers_n = options.concurrency;
    let mut per_worker: Vec<Vec<WorkerListener>> = (0..workers_n).map(|_| Vec::new()).collect();
    let mut bound_listeners = Vec::with_capacity(built.listeners.len());
    for config in &built.listeners {
        let sockets = bind_sockets(config, workers_n).map_err(|e| {
            StartError::Io(format!(
                "cannot listen on {} (listener '{}'): {e}",
                config.address, config.name
            ))
        })?;
        info!(
            "listener '{}' listening on {}",
            config.name, sockets.address
        );
        bound_listeners.push((config.name.clone(), sockets.address));
        let stat_prefix = format!("listener.{}", stat_address(sockets.address));
        for (i, socket) in sockets.per_worker.into_iter().enumerate() {
            per_worker[i].push(WorkerListener {
                config: config.clone(),
                socket,
                stat_prefix: stat_prefix.clone(),
            });
        }
    }

    // 3. Main dispatcher, admin, signals.
    let dispatcher =
        Dispatcher::new("main_thread").map_err(|e| StartError::Io(format!("dispatcher: {e}")))?;
    let admin = AdminServer::new(
        built.stats.clone(),
        options.clone(),
        built.bootstrap.clone(),
        crate::http::conn_manager_filter::health_check_failed_flag(),
    );
    admin.set_listeners(bound_listeners);
    admin.set_access_logs(built.admin_access_logs.clone());
    admin.add_dispatcher("main_thread", "server.", dispatcher.stats());
    admin.set_cluster_manager(cluster_manager.handle());
    let admin_handler = ConnectionHandler::new(
        dispatcher.clone(),
        usize::MAX,
        "main_thread",
        built.stats.clone(),
    );
    if let Some(address) = built.bootstrap.admin.as_ref().and_then(|a| a.address) {
        let bound = start_admin(&admin, &admin_handler, address)?;
        info!("admin address: {bound}");
    }

    // 4. Workers.
    let started = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(workers_n);
    for (index, listeners) in per_worker.into_iter().enumerate() {
        let worker = Worker::start(
            index,
            listeners,
            built.worker_stats[index].clone(),
            cluster_manager.handle(),
            started.clone(),
        )
        .map_err(|e| StartError::Io(format!("cannot start worker {index}: {e}")))?;
        admin.add_dispatcher(
            &worker.name,
            &format!("listener_manager.{}.", worker.name),
            worker.dispatcher_stats.clone(),
        );
        workers.push(worker);
    }
    // Envoy's listener_manager.* gauges and the counter drain_listeners adds to.
    let listener_manager = built.stats.scope("listener_manager");
    listener_manager
        .gauge("total_listeners_active", ImportMode::NeverImport)
        .set(built.listeners.len() as u64);
    let listener_stopped = listener_manager.counter("listener_stopped");
    // Set once the workers were told to drain (SIGTERM/SIGINT or `/drain_listeners?graceful`).
    let drain_started = Arc::new(AtomicBool::new(false));
    admin.set_control(Box::new(InstanceControl {
        main: dispatcher.poster(),
        workers: workers.iter().map(Worker::poster).collect(),
        drain_time: options.drain_time,
        drain: DrainManager::new(options.drain_strategy, options.drain_time),
        access_log_manager: built.access_log_manager.clone(),
        listeners: built.listeners.len() as u64,
        listener_stopped,
        stopped: Arc::new(AtomicBool::new(false)),
        drain_started: drain_started.clone(),
    }));
    if started.load(Ordering::Acquire) == workers_n {
        listener_manager
            .gauge("workers_started", ImportMode::NeverImport)
            .set(1);
        admin.set_state(ServerState::Live);
        info!("all workers started: server is LIVE");
    }
    if built
        .bootstrap
        .static_resources
        .listeners
        .iter()
        .any(|l| l.name == "echo")
        && options.config_path.is_none()
    {
        info!("try: curl -i http://127.0.0.1:10000/   and   curl http://127.0.0.1:9901/stats");
    }

    // Shutdown: drain on the first signal, exit at once on the second.
    let drained = Arc::new(AtomicUsize::new(0));
    let draining = Arc::new(AtomicBool::new(false));
    let workers = Rc::new(std::cell::RefCell::new(workers));
    let drain_timer = {
        let d = dispatcher.clone();
        dispatcher.create_timer(move || {
            warn!("drain time is up: exiting with connections still open");
            d.exit();
        })
    };
    let drain_timer = Rc::new(drain_timer);
    let on_signal = {
        let dispatcher = dispatcher.clone();
        let admin = admin.clone();
        let workers = workers.clone();
        let drained = drained.clone();
        let draining = draining.clone();
        let drain_timer = drain_timer.clone();
        let drain_time = options.drain_time;
        let drain = DrainManager::new(options.drain_strategy, options.drain_time);
        let drain_started = drain_started.clone();
        move |name: &str| {
            if draining.swap(true, Ordering::AcqRel) {
                info!("caught {name} again: exiting now");
                dispatcher.exit();
                return;
            }
            info!(
                "caught {name}: draining (up to {}s, {}; signal again to exit now)",
                drain_time.as_secs(),
                drain.strategy()
            );
            admin.set_state(ServerState::Draining);
            drain_started.store(true, Ordering::Release);
            let poster = dispatcher.poster();
            let n = workers.borrow().len();
            for worker in workers.borrow().iter() {
                let drained = drained.clone();
                let poster = poster.clone();
                worker.post(move |h| {
                    h.stop_listeners();
                    let remaining = h.num_connections();
                    if remaining > 0 {
                        info!("draining {remaining} connection(s)");
                    }
                    h.start_draining(
                        drain,
                        Box::new(move || {
                            if drained.fetch_add(1, Ordering::AcqRel) + 1 == n {
                                poster.exit();
                            }
                        }),
                    );
                });
            }
            drain_timer.enable(drain_time.max(Duration::from_millis(1)));
        }
    };
    let on_signal = Rc::new(on_signal);
    let _sigterm = {
        let f = on_signal.clone();
        dispatcher
            .listen_for_signal(Signal::SIGTERM, move || f("SIGTERM"))
            .map_err(|e| StartError::Io(format!("signal: {e}")))?
    };
    let _sigint = {
        let f = on_signal.clone();
        dispatcher
            .listen_for_signal(Signal::SIGINT, move || f("SIGINT"))
            .map_err(|e| StartError::Io(format!("signal: {e}")))?
    };

    // SIGUSR1: reopen the access logs (log rotation), as Envoy.
    let _sigusr1 = {
        let admin = admin.clone();
        dispatcher
            .listen_for_signal(Signal::SIGUSR1, move || {
                info!("caught SIGUSR1: reopening access logs");
                admin.reopen_logs();
            })
            .map_err(|e| StartError::Io(format!("signal: {e}")))?
    };

    // The stats flush (Envoy's stats_flush_interval, 5 s): server.* gauges, dispatcher
    // histograms, histogram intervals.
    let flush_timer = Rc::new(std::cell::RefCell::new(None::<reactor::Timer>));
    {
        let admin = admin.clone();
        let weak = Rc::downgrade(&flush_timer);
        let timer = dispatcher.create_timer(move || {
            admin.flush_stats();
            if let Some(t) = weak.upgrade() {
                if let Some(t) = t.borrow().as_ref() {
                    t.enable(STATS_FLUSH_INTERVAL);
                }
            }
        });
        timer.enable(STATS_FLUSH_INTERVAL);
        *flush_timer.borrow_mut() = Some(timer);
    }
    admin.refresh_stats();

    // 5. The main loop.
    info!("starting main dispatch loop");
    if let Err(e) = dispatcher.run(RunType::RunUntilExit) {
        error!("main dispatcher failed: {e}");
    }
    info!("main dispatch loop exited");
    for worker in workers.borrow_mut().iter_mut() {
        worker.stop();
    }
    drop(admin_handler);
    // Everything logged reaches its file before the process exits.
    built.access_log_manager.shutdown();
    info!("exiting");
    Ok(())
}

use std::rc::Rc;

/// How often the stats are flushed (Envoy's default `stats_flush_interval`).
const STATS_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// How long startup waits for the first answer of every DNS cluster.
const INITIAL_DNS_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin endpoint may do to the running server (`/quitquitquit`,
/// `/drain_listeners`, `/reopen_logs`); every action is a post to a dispatcher.
struct InstanceControl {
    main: reactor::Poster,
    workers: Vec<reactor::Poster>,
    drain_time: Duration,
    /// The drain strategy and time each worker drains with.
    drain: DrainManager,
    access_log_manager: AccessLogManager,
    /// Listeners in the config, and `listener_manager.listener_stopped` (counted once each).
    listeners: u64,
    listener_stopped: crate::stats::Counter,
    stopped: Arc<AtomicBool>,
    /// The workers were told to drain (by a signal or a graceful `/drain_listeners`).
    drain_started: Arc<AtomicBool>,
}

impl InstanceControl {
    fn stop_listeners(
        workers: &[reactor::Poster],
        stopped: &AtomicBool,
        counter: &crate::stats::Counter,
        listeners: u64,
    ) {
        if !stopped.swap(true, Ordering::AcqRel) {
            counter.add(listeners);
        }
        for w in workers {
            w.post(Box::new(|| {
                super::worker::with_handler(|h| h.stop_listeners());
            }));
        }
    }
}

impl crate::admin::ServerControl for InstanceControl {
    fn quit(&self) {
        // The main loop returns and `serve` shuts down as after a second signal.
        self.main.exit();
    }

    /// Envoy 1.40's `handlerDrainListeners`: without `graceful` (or `skip_exit`) the listeners
    /// stop now and the connections go on undisturbed. With `graceful` the drain sequence
    /// starts (once: later calls are ignored, as is a call during a signal's drain): every
    /// HTTP connection is drain-closed as on SIGTERM (`connection: close` on its in-flight or
    /// next response, `downstream_cx_drain_close`, closed if still idle after
    /// `drain_timeout`), the listeners keep accepting for `--drain-time-s` and then stop
    /// (never with `skip_exit`). The server stays LIVE and does not exit.
    fn drain_listeners(&self, graceful: bool, skip_exit: bool) {
        let stop = {
            let (workers, stopped) = (self.workers.clone(), self.stopped.clone());
            let (counter, listeners) = (self.listener_stopped.clone(), self.listeners);
            move || InstanceControl::stop_listeners(&workers, &stopped, &counter, listeners)
        };
        if !graceful && !skip_exit {
            stop();
            return;
        }
        if self.drain_started.swap(true, Ordering::AcqRel) {
            info!("drain_listeners: the drain sequence already started");
            return;
        }
        for w in &self.workers {
            let drain = self.drain;
            w.post(Box::new(move || {
                // Nothing waits for the end of this drain: the server keeps running.
                super::worker::with_handler(|h| h.start_draining(drain, Box::new(|| {})));
            }));
        }
        if skip_exit {
            return;
        }
        // A short-lived thread waits out the drain time so that no dispatcher needs a timer
        // it does not own.
        let stop = Arc::new(stop);
        let later = stop.clone();
        let drain_time = self.drain_time;
        let spawned = std::thread::Builder::new()
            .name("drain_listeners".into())
            .spawn(move || {
                std::thread::sleep(drain_time);
                later();
            });
        if let Err(e) = spawned {
            warn!("drain_listeners: cannot start the drain timer thread ({e}); stopping now");
            stop();
        }
    }

    fn reopen_logs(&self) {
        self.access_log_manager.reopen_all();
    }
}

fn start_admin(
    admin: &Arc<AdminServer>,
    handler: &Rc<std::cell::RefCell<ConnectionHandler>>,
    address: SocketAddr,
) -> Result<SocketAddr, StartError> {
    let config = admin.listener_config(address);
    let sockets = bind_sockets(&config, 1)
        .map_err(|e| StartError::Io(format!("cannot listen on admin address {address}: {e}")))?;
    let socket = sockets
        .per_worker
        .into_iter()
        .next()
        .ok_or_else(|| StartError::Io("admin socket missing".to_string()))?;
    handler
        .borrow_mut()
        .add_listener(config, socket, "listener.admin")
        .map_err(|e| StartError::Io(format!("admin listener: {e}")))
}

/// Raises the soft fd limit to the hard limit: a proxy holds two fds per proxied connection.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                warn!("cannot raise the fd limit from {soft} to {hard}: {e}");
            }
        }
        _ => {}
    }
}
