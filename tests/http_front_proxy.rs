//! `configs/front-proxy.yaml` runs as shipped (only its ports are moved to free ones) and
//! routes, rewrites, redirects, health-checks and proxies as it says.

mod support;

use support::http::*;

#[test]
fn front_proxy_example_config_runs() {
    let s1 = HttpUpstream::start(|req, _| Reply::ok(&format!("service1 {}", req.path)));
    let s2 = HttpUpstream::start(|req, _| Reply::ok(&format!("service2 {}", req.path)));
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/front-proxy.yaml"
    ))
    .expect("configs/front-proxy.yaml");
    let text = text
        .replace("port_value: 8000", "port_value: 0")
        .replace("port_value: 8001", "port_value: 0")
        .replace(
            "port_value: 8081",
            &format!("port_value: {}", s1.addr.port()),
        )
        .replace(
            "port_value: 8082",
            &format!("port_value: {}", s2.addr.port()),
        );
    let proxy = Nuncio::start(&text);

    let r = get(proxy.listener, "/service/1/a");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "service1 /service/1/a")
    );
    assert_eq!(r.header("x-front"), Some("nuncio-example"));
    let r = get(proxy.listener, "/service/2/b");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "service2 /b"),
        "prefix_rewrite"
    );
    assert_eq!(
        s2.requests()[0].header("x-envoy-original-path"),
        Some("/service/2/b")
    );
    assert!(
        s1.requests()[0].header("x-forwarded-for").is_some(),
        "use_remote_address"
    );
    let r = get(proxy.listener, "/old");
    assert_eq!(r.status, 301);
    let r = get(proxy.listener, "/healthz");
    assert_eq!(r.status, 200);
    let r = get(proxy.listener, "/nowhere");
    assert_eq!(r.status, 404);
    proxy.wait_stat("http.ingress_http.downstream_rq_2xx", 3);
    assert_eq!(proxy.stat("http.ingress_http.no_route"), 1);
}
