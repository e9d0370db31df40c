//! The table of admin endpoints (Envoy's `AdminImpl::handlers_`): path, one-line help, whether
//! it mutates (POST only), and its query parameters; and the two pages generated from it, the
//! `/help` text (also the body of a 404) and the `/` HTML home page.
//!
//! Read by the admin server (`server.rs`) to route requests and refuse a GET to a mutating
//! endpoint. Adding an endpoint: one entry here and one arm in `AdminServer::dispatch`.

/// One admin endpoint.
pub struct Endpoint {
    /// The path, e.g. `/stats`.
    pub path: &'static str,
    /// One line of help (Envoy's wording where Envoy has the endpoint).
    pub help: &'static str,
    /// Needs POST (a GET gets 405).
    pub mutates: bool,
    /// Query parameters: (name, help).
    pub params: &'static [(&'static str, &'static str)],
}

const fn get(path: &'static str, help: &'static str) -> Endpoint {
    Endpoint {
        path,
        help,
        mutates: false,
        params: &[],
    }
}

const fn post(path: &'static str, help: &'static str) -> Endpoint {
    Endpoint {
        path,
        help,
        mutates: true,
        params: &[],
    }
}

/// Every endpoint, sorted by path (the order `/help` lists them in).
pub const ENDPOINTS: &[Endpoint] = &[
    get("/", "Admin home page"),
    Endpoint {
        params: &[
            ("format", "Format to use; One of (text, json)"),
            ("filter", "Regular expression for filtering clusters by name"),
        ],
        ..get("/clusters", "upstream cluster status")
    },
    get("/config_dump", "dump current Envoy configs"),
    Endpoint {
        params: &[
            (
                "graceful",
                "When draining listeners, enter a graceful drain period prior to closing listeners. The duration is --drain-time-s",
            ),
            (
                "skip_exit",
                "When draining listeners, drain the connections but never stop the listeners. The graceful parameter has no effect when this is set, since the drain period only delays stopping the listeners",
            ),
        ],
        ..post("/drain_listeners", "drain listeners")
    },
    post("/healthcheck/fail", "cause the server to fail health checks"),
    post("/healthcheck/ok", "cause the server to pass health checks"),
    get("/help", "print out list of admin commands"),
    Endpoint {
        params: &[("format", "File format to use; One of (text, json)")],
        ..get("/listeners", "print listener info")
    },
    Endpoint {
        params: &[
            ("paths", "Change multiple logging levels by setting to <logger_name1>:<desired_level1>,<logger_name2>:<desired_level2>."),
            ("level", "desired logging level, this will change all loggers's level; One of (trace, debug, info, warning, error, critical, off)"),
        ],
        ..post("/logging", "query/change logging levels")
    },
    get("/memory", "print current allocation/heap usage"),
    post("/quitquitquit", "exit the server"),
    Endpoint {
        params: &[("format", "Format to use; One of (text, json)")],
        ..get("/reactor", "per-dispatcher event loop introspection (nuncio)")
    },
    get("/ready", "print server state, return 200 if LIVE, otherwise return 503"),
    post("/reopen_logs", "reopen access logs"),
    post("/reset_counters", "reset all counters to zero"),
    get("/server_info", "print server version/status information"),
    Endpoint {
        params: &[
            ("usedonly", "Only include stats that have been written by system since restart"),
            ("filter", "Regular expression for filtering stats"),
            ("format", "Format to use; One of (text, json, prometheus)"),
            ("type", "Stat types to include.; One of (All, Counters, Histograms, Gauges)"),
        ],
        ..get("/stats", "print server stats")
    },
    Endpoint {
        params: &[
            ("usedonly", "Only include stats that have been written by system since restart"),
            ("filter", "Regular expression for filtering stats"),
        ],
        ..get("/stats/prometheus", "print server stats in prometheus format")
    },
];

/// The endpoint at `path`.
pub fn find(path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.path == path)
}

/// The `/help` text: `admin commands are:` and one line per endpoint, its parameters indented.
pub fn help_text() -> String {
    let mut out = String::from("admin commands are:\n");
    for e in ENDPOINTS {
        let post = if e.mutates { " (POST)" } else { "" };
        out.push_str(&format!("  {}{post}: {}\n", e.path, e.help));
        for (name, help) in e.params {
            out.push_str(&format!("      {name}: {help}\n"));
        }
    }
    out
}

/// The `/` page: a table with one row per endpoint, a link for reads and a POST button for
/// the mutating ones (as Envoy's home page; without its stylesheet and scripts).
pub fn home_page() -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n  <title>nuncio Admin</title>\n</head>\n<body>\n  <table class='home-table'>\n    <thead>\n      <tr>\n        <th class='home-data'>Command</th>\n        <th class='home-data'>Description</th>\n      </tr>\n    </thead>\n    <tbody>\n",
    );
    for e in ENDPOINTS.iter().filter(|e| e.path != "/") {
        let name = e.path.trim_start_matches('/');
        let command = if e.mutates {
            format!("<form action='{name}' method='post' class='home-form'><button>{name}</button></form>")
        } else {
            format!("<a href='{name}'>{name}</a>")
        };
        out.push_str(&format!(
            "<tr>\n  <td class='home-data'>{command}</td>\n  <td class='home-data'>{}</td>\n</tr>\n",
            html_escape(e.help)
        ));
    }
    out.push_str("    </tbody>\n  </table>\n</body>\n</html>\n");
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_pages_list_every_endpoint() {
        let paths: Vec<&str> = ENDPOINTS.iter().map(|e| e.path).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        let help = help_text();
        assert!(help.starts_with("admin commands are:\n  /: Admin home page\n"));
        assert!(help.contains("  /quitquitquit (POST): exit the server\n"));
        assert!(help.contains("      usedonly: Only include"));
        let home = home_page();
        assert!(home.contains("<a href='stats'>stats</a>"));
        assert!(home.contains("action='quitquitquit' method='post'"));
        assert!(find("/reactor").is_some_and(|e| !e.mutates));
        assert!(find("/nope").is_none());
    }
}
