//! The live dashboard: one page (embedded in the binary, no build step) and
//! the JSON it polls, served with axum on a tokio runtime of its own thread.
//! [`DashboardRecorder`] is a [`Recorder`]: every report becomes one point of
//! the curves, and the shards' latest statistics replace the table's rows.
//! The actor hosts' rows come from the weight server's [`HostTable`], read
//! when the page asks, so they stay live while the learner waits for data.
//!
//! `GET /` is the page; `GET /api/state?after=SEQ` is the state as JSON
//! with the points whose `seq` is above `SEQ` (all of them without it), so
//! a poller fetches only what is new. With a token configured, both need
//! `?token=TOKEN` or `Authorization: Bearer TOKEN` (401 otherwise).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cml_proto::host_table::{HostRow, HostTable};
use cml_proto::ShardStats;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::recorders::{Figures, Recorder, Report};
use crate::RunError;

/// The page: HTML, CSS and JavaScript in one file, no external assets.
const PAGE: &str = include_str!("dashboard.html");

/// Points kept. Past this the grain doubles: only reports whose `seq` is a
/// multiple of the stride stay (plus the first and the newest), so a long
/// run keeps its whole curve, evenly spaced, at a coarser grain.
const MAX_POINTS: usize = 4096;

/// One report, as the page draws it.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Report number in this learner process, from 1.
    pub seq: u64,
    #[serde(flatten)]
    pub figures: Figures,
    /// The algorithm's scalars, in the order of `DashboardState::scalars`.
    pub values: Vec<f64>,
}

/// A scalar the algorithm reports (name and help).
#[derive(Clone, Debug, Serialize)]
pub struct ScalarInfo {
    pub name: String,
    pub help: String,
}

/// What `/api/state` returns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DashboardState {
    pub scalars: Vec<ScalarInfo>,
    pub points: Vec<Point>,
    /// Each shard's latest statistics.
    pub shards: Vec<ShardStats>,
    /// Every actor host that reported (active first, then gone).
    pub hosts: Vec<HostRow>,
    /// `seq` of the newest point (0 before the first report).
    pub latest_seq: u64,
    /// Identifies this learner process (its start time in Unix
    /// milliseconds): a poller that sees it change starts over.
    pub process: u64,
    /// Every `stride`-th report is kept (1, 2, 4, ... as the run grows).
    #[serde(skip)]
    stride: u64,
}

impl DashboardState {
    fn add(&mut self, r: &Report<'_>) {
        if self.scalars.is_empty() {
            self.scalars = r
                .scalars
                .iter()
                .map(|s| ScalarInfo {
                    name: s.name.to_string(),
                    help: s.help.to_string(),
                })
                .collect();
        }
        self.latest_seq += 1;
        let stride = self.stride.max(1);
        let on_grid = |seq: u64| seq == 1 || seq % stride == 0;
        // The previous newest point stays only if it is on the grid.
        if self.points.last().is_some_and(|p| !on_grid(p.seq)) {
            self.points.pop();
        }
        self.points.push(Point {
            seq: self.latest_seq,
            figures: r.figures,
            values: r.values.to_vec(),
        });
        if self.points.len() > MAX_POINTS {
            // Double the grain of the whole curve.
            self.stride = stride * 2;
            let (stride, newest) = (self.stride, self.latest_seq);
            self.points
                .retain(|p| p.seq == 1 || p.seq % stride == 0 || p.seq == newest);
        }
        if !r.shards.is_empty() {
            self.shards = r.shards.iter().map(|(_, s)| s.clone()).collect();
        }
    }

    /// The state with only the points after `after`.
    fn since(&self, after: u64) -> DashboardState {
        DashboardState {
            scalars: self.scalars.clone(),
            points: self.points.iter().filter(|p| p.seq > after).cloned().collect(),
            shards: self.shards.clone(),
            hosts: Vec::new(),
            latest_seq: self.latest_seq,
            process: self.process,
            stride: self.stride,
        }
    }
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<DashboardState>>,
    hosts: HostTable,
    token: Option<Arc<str>>,
}

#[derive(Deserialize)]
struct StateQuery {
    after: Option<u64>,
    token: Option<String>,
}

#[derive(Deserialize)]
struct PageQuery {
    token: Option<String>,
}

impl Shared {
    /// No token configured, or the request carries it.
    fn allows(&self, headers: &HeaderMap, query_token: Option<&str>) -> bool {
        let Some(token) = &self.token else { return true };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        [bearer, query_token].into_iter().flatten().any(|t| t == &**token)
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "dashboard: a token is required (?token= or Authorization: Bearer)\n",
    )
        .into_response()
}

async fn page(State(shared): State<Shared>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    if !shared.allows(&headers, q.token.as_deref()) {
        return unauthorized();
    }
    Html(PAGE).into_response()
}

async fn api_state(State(shared): State<Shared>, headers: HeaderMap, Query(q): Query<StateQuery>) -> Response {
    if !shared.allows(&headers, q.token.as_deref()) {
        return unauthorized();
    }
    let mut state = shared.state.lock().since(q.after.unwrap_or(0));
    state.hosts = shared.hosts.rows(std::time::Instant::now());
    Json(state).into_response()
}

/// Serves the dashboard and feeds it every report.
pub struct DashboardRecorder {
    state: Arc<Mutex<DashboardState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    address: SocketAddr,
}

impl DashboardRecorder {
    /// Binds `address` now (so a taken port is an error here) and serves
    /// from a thread of its own until the recorder is finished or dropped;
    /// the hosts table shows `hosts`.
    pub fn serve(address: SocketAddr, token: Option<String>, hosts: HostTable) -> Result<DashboardRecorder, RunError> {
        let listener = std::net::TcpListener::bind(address)
            .map_err(|e| RunError::Config(format!("learner.dashboard_port: binding {address}: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| RunError::Config(format!("dashboard: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RunError::Config(format!("dashboard: {e}")))?;
        let process = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let state = Arc::new(Mutex::new(DashboardState {
            process,
            stride: 1,
            ..DashboardState::default()
        }));
        let shared = Shared {
            state: Arc::clone(&state),
            hosts,
            token: token.map(Arc::from),
        };
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| RunError::Config(format!("dashboard: starting its runtime: {e}")))?;
        let server = std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let app = Router::new()
                        .route("/", get(page))
                        .route("/api/state", get(api_state))
                        .with_state(shared);
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("dashboard: {e}");
                            return;
                        }
                    };
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("dashboard: {e}");
                    }
                });
            })
            .map_err(|e| RunError::Config(format!("dashboard: starting its thread: {e}")))?;
        Ok(DashboardRecorder {
            state,
            shutdown: Some(shutdown),
            server: Some(server),
            address,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

impl Recorder for DashboardRecorder {
    fn record(&mut self, report: &Report<'_>) -> Result<(), RunError> {
        self.state.lock().add(report);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), RunError> {
        self.stop();
        Ok(())
    }
}

impl Drop for DashboardRecorder {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cml_learner::ScalarSpec;

    fn report<'a>(frames: u64, scalars: &'a [ScalarSpec], values: &'a [f64]) -> Report<'a> {
        Report {
            figures: Figures {
                wall_s: frames as f64,
                env_frames: frames,
                mean_return_100: Some(1.0),
                ..Figures::default()
            },
            scalars,
            values,
            shards: &[],
        }
    }

    /// `GET path` on loopback; (status code, body).
    fn get(address: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    #[test]
    fn the_page_and_state_are_served_and_a_token_is_enforced() {
        let token = "a-token-of-16-chars";
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let hosts = HostTable::new();
        let status = cml_proto::HostStatus {
            host_id: 3,
            hostname: "<b>node</b>".into(),
            actors: 64,
            ..cml_proto::HostStatus::default()
        };
        hosts.record(42, "10.1.2.3", &status, std::time::Instant::now());
        let mut dashboard = DashboardRecorder::serve(loopback, Some(token.into()), hosts).unwrap();
        let address = dashboard.address();
        let scalars = [ScalarSpec {
            name: "loss/x",
            help: "x",
        }];
        dashboard.record(&report(640, &scalars, &[0.5])).unwrap();
        assert_eq!(get(address, "/", None).0, 401);
        assert_eq!(get(address, "/api/state", Some("wrong")).0, 401);
        let (code, page) = get(address, &format!("/?token={token}"), None);
        assert!(
            code == 200 && page.contains("<canvas") && page.contains("api/state"),
            "{code} {page}"
        );
        let (code, body) = get(address, "/api/state?after=0", Some(token));
        assert_eq!(code, 200, "{body}");
        let state: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(state["latest_seq"], 1);
        assert_eq!(state["scalars"][0]["name"], "loss/x");
        assert_eq!(state["points"][0]["env_frames"], 640);
        assert_eq!(state["points"][0]["values"][0], 0.5);
        let host = &state["hosts"][0];
        assert_eq!((host["sender"].as_u64(), host["host_id"].as_u64()), (Some(42), Some(3)));
        assert_eq!(
            (host["address"].as_str(), host["state"].as_str()),
            (Some("10.1.2.3"), Some("active"))
        );
        assert_eq!(
            host["hostname"], "<b>node</b>",
            "the JSON carries it as sent; the page escapes it"
        );
        let (_, body) = get(address, &format!("/api/state?after=1&token={token}"), None);
        let state: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(state["points"].as_array().map(Vec::len), Some(0));
        dashboard.finish().unwrap();
        assert!(std::net::TcpStream::connect(address).is_err(), "stopped serving");
        // Without a token everything is open.
        let open = DashboardRecorder::serve(loopback, None, HostTable::new()).unwrap();
        assert_eq!(get(open.address(), "/api/state", None).0, 200);
    }

    #[test]
    fn points_come_after_a_seq_and_a_long_run_is_thinned_evenly() {
        let scalars = [ScalarSpec {
            name: "loss/x",
            help: "x",
        }];
        let mut state = DashboardState::default();
        for i in 0..MAX_POINTS as u64 {
            state.add(&report(i, &scalars, &[i as f64]));
        }
        assert_eq!(state.points.len(), MAX_POINTS);
        assert_eq!(state.since(MAX_POINTS as u64 - 2).points.len(), 2);
        assert_eq!(state.scalars[0].name, "loss/x");
        // A long run: 20,000 reports.
        let total = 20_000u64;
        for i in MAX_POINTS as u64..total {
            state.add(&report(i, &scalars, &[0.0]));
        }
        let seqs: Vec<u64> = state.points.iter().map(|p| p.seq).collect();
        assert!(
            seqs.len() <= MAX_POINTS && seqs.len() >= MAX_POINTS / 4,
            "{}",
            seqs.len()
        );
        assert_eq!(
            (seqs[0], *seqs.last().unwrap()),
            (1, total),
            "the first and the newest stay"
        );
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        // Evenly: the first half of the run keeps about half of the points.
        let first_half = seqs.iter().filter(|s| **s <= total / 2).count();
        assert!(
            (first_half as f64 / seqs.len() as f64 - 0.5).abs() < 0.1,
            "{first_half} of {} points in the first half",
            seqs.len()
        );
        assert_eq!(state.latest_seq, total);
    }
}
