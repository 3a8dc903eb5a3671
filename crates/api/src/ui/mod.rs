//! The web dashboard: pages drawn on the server from templates and assets built into the binary.
//!
//! Every page reads well without JavaScript; the one vendored script (`assets/app.js`, no
//! dependencies) only follows `/live`, the server-sent events of the writer's commits, to refresh
//! the part of a page marked `data-live`, and switches the theme. Reads and actions go through the
//! same functions as the JSON API (`incidents::act`, `runbooks::answer`, ...),
//! so the dashboard can do nothing the API would refuse. Sign-in, the session cookie and CSRF are
//! in [`session`].

mod health;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use chrono::{DateTime, Utc};
use homeostat_core::incident::{IncidentId, State as IncidentState};
use homeostat_core::matcher;
use homeostat_engine::Handle;
use homeostat_store::{IncidentQuery, RunQuery, RunStatus};
use minijinja::{context, Environment, Value};
use serde::Deserialize;

use crate::error::{ApiError, Code};
use crate::incidents::{act, parse_id, Act, Record};
use session::{csrf_matches, Sessions, Viewer};

/// Rows a list page shows.
const PAGE: usize = 50;

/// How many incidents a matcher search reads, at most, to fill one page; past it, the page ends
/// early and its "older" link goes on from where the search stopped.
const SEARCH_BUDGET: usize = 5_000;

/// The dashboard's routes, merged into the API's router.
pub fn routes(handle: &Handle) -> Router<Handle> {
    let ui = Arc::new(Ui::new(handle.changes().clone()));
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/incidents", get(incidents))
        .route("/incidents/{id}", get(incident))
        .route("/incidents/{id}/{action}", post(incident_action))
        .route("/incidents/{id}/postmortem.md", get(postmortem))
        .route("/incidents/{id}/run", post(run_for_incident))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/runs/{id}/log", get(run_log))
        .route("/runs/{id}/{action}", post(run_action))
        .route("/approvals", get(approvals))
        .route("/silences", get(silences).post(create_silence))
        .route("/rules", get(rules))
        .route("/slos", get(slos))
        .route("/detectors", get(detectors))
        .route("/health", get(health_page))
        .route("/rules/{rule}/enable", post(enable_rule))
        .route("/silences/{id}/expire", post(expire_silence))
        .route("/live", get(live))
        .route("/assets/{file}", get(asset))
        .layer(Extension(ui))
}

/// The templates and the sessions.
pub struct Ui {
    templates: Environment<'static>,
    sessions: Sessions,
    /// The health page's previous reading, for rates between two views.
    previous: health::Previous,
    /// The count of changes a page is drawn at, which `/live` compares with.
    changes: homeostat_engine::Changes,
}

impl Ui {
    fn new(changes: homeostat_engine::Changes) -> Self {
        let mut templates = Environment::new();
        // A field left out of a record (an empty map, a time not reached yet) renders as nothing,
        // and so does anything read through it.
        templates.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in TEMPLATES {
            templates
                .add_template(name, source)
                .expect("the dashboard's templates compile");
        }
        templates.add_filter("when", when);
        templates.add_filter("clock", clock);
        templates.add_filter("ago", ago);
        templates.add_filter("took", took);
        templates.add_filter("web_link", web_link);
        templates.add_filter("seconds_since", seconds_since);
        templates.add_filter("number", number);
        Self {
            templates,
            sessions: Sessions::default(),
            previous: health::Previous::default(),
            changes,
        }
    }

    /// Renders a page: `200` with the headers every page carries.
    fn page(&self, name: &str, viewer: Option<&Viewer>, values: Value) -> Response {
        self.render(StatusCode::OK, name, viewer, values)
    }

    fn render(
        &self,
        status: StatusCode,
        name: &str,
        viewer: Option<&Viewer>,
        values: Value,
    ) -> Response {
        let viewer = viewer.map(|viewer| {
            context! {
                name => viewer.name,
                can_write => viewer.can_write,
                csrf => viewer.csrf,
            }
        });
        let html = self.templates.get_template(name).and_then(|template| {
            template.render(context! { viewer, version => self.changes.current(), ..values })
        });
        match html {
            Ok(html) => (status, page_headers(), html).into_response(),
            Err(error) => {
                tracing::error!(%error, template = name, "a dashboard page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    page_headers(),
                    "the page failed to render; see the server log",
                )
                    .into_response()
            }
        }
    }

    /// A page saying what went wrong, with the API's status for it.
    fn error(&self, viewer: Option<&Viewer>, error: ApiError) -> Response {
        let message = match error.code {
            Code::Internal => {
                tracing::error!(detail = %error.message, "dashboard request failed");
                "internal error; see the server log".to_string()
            }
            _ => error.message,
        };
        self.render(
            error.code.status(),
            "error.html",
            viewer,
            context! { message, code => error.code.as_str() },
        )
    }
}

const TEMPLATES: [(&str, &str); 14] = [
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("incidents.html", include_str!("templates/incidents.html")),
    ("incident.html", include_str!("templates/incident.html")),
    ("runs.html", include_str!("templates/runs.html")),
    ("run.html", include_str!("templates/run.html")),
    ("approvals.html", include_str!("templates/approvals.html")),
    ("silences.html", include_str!("templates/silences.html")),
    ("rules.html", include_str!("templates/rules.html")),
    ("slos.html", include_str!("templates/slos.html")),
    ("detectors.html", include_str!("templates/detectors.html")),
    ("health.html", include_str!("templates/health.html")),
];

/// Headers of every page: no caching of what a token may see, no framing, scripts and styles only
/// from this server.
fn page_headers() -> [(header::HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ]
}

/// The viewer of a page, from the request's session cookie. Without a live session a page
/// (`GET`) is answered with a redirect to sign in that comes back to it; a form's `POST` is
/// refused with a page that says the session ended, since what it carried cannot be replayed.
pub(crate) struct SignedIn {
    viewer: Viewer,
    ui: Arc<Ui>,
}

impl axum::extract::FromRequestParts<Handle> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        handle: &Handle,
    ) -> Result<Self, Response> {
        let Some(ui) = parts.extensions.get::<Arc<Ui>>().cloned() else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        if parts.method != axum::http::Method::GET && cross_site(&parts.headers) {
            return Err(ui.error(None, cross_site_refused()));
        }
        if let Some(viewer) = ui.sessions.viewer(handle, &parts.headers) {
            return Ok(Self { viewer, ui });
        }
        if parts.method != axum::http::Method::GET {
            return Err(ui.error(
                None,
                ApiError::new(
                    Code::MissingToken,
                    "your session has ended (signed out, expired, or the daemon restarted); sign in again and repeat what you did",
                ),
            ));
        }
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        let next: String =
            percent_encoding::utf8_percent_encode(here, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        Err(see_other(&format!("/login?next={next}")))
    }
}

/// Whether the browser says the request comes from another site (`Sec-Fetch-Site`, sent by every
/// current browser). The session cookie is `SameSite=Strict` and forms carry a CSRF token; this
/// refuses the rest, such as another site posting its own token to `/login`.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

fn cross_site_refused() -> ApiError {
    ApiError::new(
        Code::ForbiddenScope,
        "a form from another site cannot act here; use the dashboard's own pages",
    )
}

fn invalid_query(error: QueryRejection) -> ApiError {
    ApiError::new(Code::InvalidQuery, error.body_text())
}

fn see_other(location: &str) -> Response {
    let location = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// A path on this server to go back to after signing in; anything else goes to the start page,
/// so the sign-in page cannot send anyone to another site.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next
        }
        _ => "/incidents",
    }
}

/// Checks a form's CSRF token and that the viewer may change things.
fn may_change(ui: &Ui, viewer: &Viewer, csrf: &str) -> Result<(), Box<Response>> {
    if !csrf_matches(&viewer.csrf, csrf) {
        return Err(Box::new(ui.error(
            Some(viewer),
            ApiError::new(
                Code::InvalidToken,
                "this form is stale or was not sent from this dashboard; reload the page and try again",
            ),
        )));
    }
    if !viewer.can_write {
        return Err(Box::new(ui.error(
            Some(viewer),
            ApiError::new(
                Code::ForbiddenScope,
                format!("token `{}` lacks the `write` scope", viewer.name),
            ),
        )));
    }
    Ok(())
}

async fn home() -> Response {
    see_other("/incidents")
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_form(
    State(handle): State<Handle>,
    Extension(ui): Extension<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = local_path(query.next.as_deref()).to_string();
    if ui.sessions.viewer(&handle, &headers).is_some() {
        return see_other(&next);
    }
    ui.page(
        "login.html",
        None,
        context! { next, tokens => handle.has_tokens() },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Signs in with an API token that has at least the `read` scope.
async fn login(
    State(handle): State<Handle>,
    Extension(ui): Extension<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // Another site must not sign a browser in with a token of its choosing.
    if cross_site(&headers) {
        return ui.error(None, cross_site_refused());
    }
    let next = local_path(form.next.as_deref()).to_string();
    let refused = |message: &str| {
        ui.render(
            StatusCode::UNAUTHORIZED,
            "login.html",
            None,
            context! { next, message, tokens => handle.has_tokens() },
        )
    };
    let Some(token) = handle.authenticate(form.token.trim()) else {
        return refused("that token is not one of the configured `api_tokens`");
    };
    if !token.allows(homeostat_core::config::Scope::Read) {
        return refused("that token has no `read` scope, so there is nothing it may see here");
    }
    tracing::info!(token = %token.name, "signed in to the dashboard");
    let id = ui.sessions.start(token, handle.clock().now());
    let mut response = see_other(&next);
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(&id));
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(handle): State<Handle>,
    Extension(ui): Extension<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    // Only a form of this dashboard may sign its viewer out.
    if let Some(viewer) = ui.sessions.viewer(&handle, &headers) {
        if csrf_matches(&viewer.csrf, &form.csrf) {
            ui.sessions.end(&headers);
        }
    }
    let mut response = see_other("/login");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(""));
    response
}

#[derive(Deserialize, Default)]
struct IncidentsQuery {
    /// `active` (not resolved; the default), `all`, or one state.
    state: Option<String>,
    /// `name=value`: only incidents grouped by this label value.
    label: Option<String>,
    /// Alertmanager matchers over the incident's grouping labels: `{service=~"check.*"}`.
    q: Option<String>,
    /// A label to group the page's rows by.
    group: Option<String>,
    before: Option<IncidentId>,
}

async fn incidents(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    query: Result<Query<IncidentsQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(error) => return ui.error(Some(&viewer), invalid_query(error)),
    };
    match incidents_page(&handle, &query).await {
        Ok(values) => ui.page("incidents.html", Some(&viewer), values),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

async fn incidents_page(handle: &Handle, query: &IncidentsQuery) -> Result<Value, ApiError> {
    let state_name = query.state.as_deref().unwrap_or("active");
    let (open_only, state) = match state_name {
        "active" => (true, None),
        "all" => (false, None),
        other => match IncidentState::parse(other) {
            Some(state) => (false, Some(state)),
            None => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!("state: `{other}` is not one of active, all, open, acknowledged, mitigated, resolved"),
                ))
            }
        },
    };
    let label = query
        .label
        .as_deref()
        .filter(|text| !text.is_empty())
        .map(crate::incidents::parse_label)
        .transpose()?;
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let matchers = match search {
        None => Vec::new(),
        Some(text) => matcher::parse_list(text).map_err(|error| {
            ApiError::new(
                Code::InvalidQuery,
                format!("search: {error}; write matchers such as {{service=\"checkout\", severity=~\"page|critical\"}}"),
            )
        })?,
    };
    let store = handle.store();
    let counts = store
        .incident_counts()
        .await
        .map_err(crate::read::store_error)?;
    // Read pages from the store until this one is full; with matchers, up to a budget.
    let mut shown = Vec::new();
    let mut before = query.before;
    let mut read = 0;
    let mut exhausted = false;
    while shown.len() < PAGE && read < SEARCH_BUDGET.max(PAGE) {
        let limit = if matchers.is_empty() { PAGE } else { 500 };
        let batch = store
            .incidents(&IncidentQuery {
                limit,
                open_only,
                state,
                label: label.clone(),
                before_id: before,
                ..Default::default()
            })
            .await
            .map_err(crate::read::store_error)?;
        read += batch.len();
        if batch.len() < limit {
            exhausted = true;
        }
        for incident in batch {
            before = Some(incident.id);
            let matched = matchers.iter().all(|matcher| {
                matcher.matches_value(incident.labels.get(&matcher.name).unwrap_or(""))
            });
            if matched {
                shown.push(incident);
                if shown.len() == PAGE {
                    break;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    // Older pages exist unless the store ran out before this page filled.
    let next = if exhausted && shown.len() < PAGE {
        None
    } else {
        before
    };
    let groups = query
        .group
        .as_deref()
        .filter(|group| !group.is_empty())
        .map(|group| {
            let mut groups: Vec<(String, Vec<&homeostat_core::incident::Incident>)> = Vec::new();
            for incident in &shown {
                let value = incident.labels.get(group).unwrap_or("").to_string();
                match groups.iter_mut().find(|(name, _)| *name == value) {
                    Some((_, members)) => members.push(incident),
                    None => groups.push((value, vec![incident])),
                }
            }
            groups
        });
    Ok(context! {
        now => handle.clock().now(),
        counts,
        active => counts.open + counts.acknowledged + counts.mitigated,
        all => counts.open + counts.acknowledged + counts.mitigated + counts.resolved,
        state => state_name,
        label => query.label.clone().unwrap_or_default(),
        q => search.unwrap_or_default(),
        group => query.group.clone().unwrap_or_default(),
        groups,
        incidents => shown,
        next,
        first_page => query.before.is_none(),
        searched => read,
    })
}

async fn incident(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let record = match parse_id(&id) {
        Ok(id) => Record::read(&handle, id).await,
        Err(error) => Err(error),
    };
    let record = match record {
        Ok(record) => record,
        Err(error) => return ui.error(Some(&viewer), error),
    };
    let incident = &record.incident;
    let since = |at: Option<DateTime<Utc>>, from: DateTime<Utc>| {
        at.map(|at| (at - from).num_milliseconds() as f64 / 1000.0)
    };
    let durations = context! {
        detect => since(Some(incident.opened_at), incident.started_at),
        acknowledge => since(incident.acknowledged_at, incident.opened_at),
        mitigate => since(incident.mitigated_at, incident.opened_at),
        resolve => since(incident.resolved_at, incident.opened_at),
    };
    let prometheus = handle
        .compiled()
        .config
        .prometheus_url(None)
        .map(|url| url.trim_end_matches('/').to_string());
    // The runbooks a person may run against it, with their parameters, for the form.
    let runbooks: Vec<serde_json::Value> = handle
        .compiled()
        .config
        .runbooks
        .iter()
        .map(|runbook| {
            serde_json::json!({
                "name": runbook.name,
                "description": runbook.description,
                "params": runbook.params.iter().map(|(name, param)| serde_json::json!({
                    "name": name, "required": param.required && param.default.is_none(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    ui.page(
        "incident.html",
        Some(&viewer),
        context! {
            runbooks => Value::from_serialize(&runbooks),
            now => handle.clock().now(),
            incident => record.incident,
            members => record.members,
            timeline => record.timeline,
            runs => record.runs,
            context => record.context,
            durations,
            prometheus,
        },
    )
}

/// `GET /incidents/{id}/postmortem.md`: the postmortem draft as a Markdown file to save or paste.
async fn postmortem(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let draft = match parse_id(&id) {
        Ok(number) => crate::incidents::postmortem_draft(&handle, number)
            .await
            .map(|markdown| (number, markdown)),
        Err(error) => Err(error),
    };
    match draft {
        Ok((number, markdown)) => (
            [
                (
                    header::CONTENT_TYPE,
                    "text/markdown; charset=utf-8".to_string(),
                ),
                (header::CACHE_CONTROL, "no-store".to_string()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("inline; filename=\"incident-{number}-postmortem.md\""),
                ),
            ],
            markdown,
        )
            .into_response(),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

#[derive(Deserialize)]
struct RunForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    runbook: String,
    #[serde(default)]
    target: String,
    /// `name=value` per line; values convert to the declared types.
    #[serde(default)]
    params: String,
    #[serde(default)]
    dry_run: Option<String>,
}

/// `POST /incidents/{id}/run`: runs a runbook against the incident, as the viewer; the run shows on
/// the incident's timeline, credited to them.
async fn run_for_incident(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<RunForm>,
) -> Response {
    if let Err(refused) = may_change(&ui, &viewer, &form.csrf) {
        return *refused;
    }
    let started = async {
        let incident = parse_id(&id)?;
        let mut params = std::collections::BTreeMap::new();
        for line in form
            .params
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
        {
            let Some((name, value)) = line.split_once('=') else {
                return Err(ApiError::new(
                    Code::InvalidParam,
                    format!("params: `{line}` is not `name=value`; write one parameter a line"),
                ));
            };
            params.insert(
                name.trim().to_string(),
                serde_json::Value::String(value.trim().to_string()),
            );
        }
        let target = Some(form.target.trim().to_string()).filter(|target| !target.is_empty());
        handle
            .start_runbook_for(
                &form.runbook,
                &params,
                target,
                form.dry_run.is_some(),
                &viewer.name,
                Some(incident),
            )
            .await
            .map_err(|error| crate::runbooks::start_error(&handle, &form.runbook, error))
    };
    match started.await {
        Ok(plan) => see_other(&format!("/runs/{}", plan.id)),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

async fn incident_action(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    let page = format!("/incidents/{id}");
    if let Err(refused) = may_change(&ui, &viewer, &form.csrf) {
        return *refused;
    }
    let act_on = match action.as_str() {
        "ack" => Act::Acknowledge(Some(form.text)),
        "resolve" => Act::Resolve(Some(form.text)),
        "note" => Act::Note(form.text),
        other => {
            return ui.error(
                Some(&viewer),
                ApiError::new(Code::NotFound, format!("no incident action `{other}`")),
            )
        }
    };
    let result = match parse_id(&id) {
        Ok(id) => act(&handle, id, &viewer.name, act_on).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => see_other(&page),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

#[derive(Deserialize, Default)]
struct RunsQuery {
    status: Option<String>,
    rule: Option<String>,
    before: Option<String>,
}

async fn runs(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(error) => return ui.error(Some(&viewer), invalid_query(error)),
    };
    let page = async {
        let status = match query.status.as_deref().filter(|status| !status.is_empty()) {
            None => None,
            Some(text) => Some(
                text.parse::<RunStatus>()
                    .map_err(|message| ApiError::new(Code::InvalidQuery, message))?,
            ),
        };
        let before = query
            .before
            .as_deref()
            .filter(|before| !before.is_empty())
            .map(crate::read::parse_run_cursor)
            .transpose()?;
        let runs = handle
            .store()
            .runs(&RunQuery {
                limit: PAGE,
                status,
                rule: query.rule.clone().filter(|rule| !rule.is_empty()),
                before,
                ..Default::default()
            })
            .await
            .map_err(crate::read::store_error)?;
        let next = (runs.len() == PAGE)
            .then(|| runs.last().map(crate::read::run_cursor))
            .flatten();
        Ok::<_, ApiError>(context! {
            now => handle.clock().now(),
            runs,
            next,
            status => query.status.clone().unwrap_or_default(),
            rule => query.rule.clone().unwrap_or_default(),
            statuses => RunStatus::ALL.iter().map(|status| status.as_str()).collect::<Vec<_>>(),
        })
    };
    match page.await {
        Ok(values) => ui.page("runs.html", Some(&viewer), values),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

async fn run(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    Path(id): Path<String>,
) -> Response {
    match crate::read::run_view(&handle, &id).await {
        Ok(view) => {
            let can_approve = can_approve(&view, &viewer);
            // A rule's own steps (`rule:NAME`) start only from the rule.
            let startable = view["run"]["runbook"].as_str().is_some_and(|runbook| {
                handle
                    .compiled()
                    .config
                    .runbooks
                    .iter()
                    .any(|known| known.name == runbook)
            });
            ui.page(
                "run.html",
                Some(&viewer),
                context! {
                    now => handle.clock().now(),
                    view => Value::from_serialize(&view),
                    can_approve,
                    startable,
                },
            )
        }
        Err(error) => ui.error(Some(&viewer), error),
    }
}

/// `GET /runs/{id}/log`: the run's journal as server-sent events, one line of text each
/// (`12:00:01.250 step_finished: step `restart` succeeded`), live until the run ends; then an
/// `end` event, so the page stops listening instead of reconnecting.
async fn run_log(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let follow = match crate::logs::Follow::start(handle, id, &headers).await {
        Ok(follow) => follow,
        Err(error) => return ui.error(Some(&viewer), error),
    };
    let stream = futures::stream::unfold(Some(follow), |follow| async move {
        let mut follow = follow?;
        let event = match follow.next().await {
            Some(entry) => {
                let line = format!(
                    "{} {}: {}",
                    entry.at.format("%H:%M:%S%.3f"),
                    entry.entry.kind(),
                    entry.words()
                );
                (
                    SseEvent::default()
                        .event("line")
                        .id(entry.seq.to_string())
                        .data(line.replace(['\n', '\r'], " ")),
                    Some(follow),
                )
            }
            None => (SseEvent::default().event("end").data("the run ended"), None),
        };
        Some((Ok::<_, std::convert::Infallible>(event.0), event.1))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The steps of the run `view` shows waiting for an approval the viewer may give: its approvals
/// as `read::run_view` read them (live ones whose step the journal shows waiting), not read again.
fn can_approve(view: &serde_json::Value, viewer: &Viewer) -> Vec<String> {
    if !viewer.can_write {
        return Vec::new();
    }
    view["pending_approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|approval| {
            let approvers = approval["approvers"].as_array();
            approvers.is_none_or(|approvers| {
                approvers.is_empty() || approvers.iter().any(|name| *name == viewer.name.as_str())
            })
        })
        .filter_map(|approval| approval["step"].as_str().map(str::to_string))
        .collect()
}

#[derive(Deserialize)]
struct RunActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    comment: String,
    /// Where to go after: the approvals page or the run's.
    #[serde(default)]
    back: Option<String>,
}

async fn run_action(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<RunActionForm>,
) -> Response {
    let page = format!("/runs/{id}");
    if let Err(refused) = may_change(&ui, &viewer, &form.csrf) {
        return *refused;
    }
    let comment = Some(form.comment.trim().to_string()).filter(|comment| !comment.is_empty());
    let step = form.step.as_deref().filter(|step| !step.is_empty());
    let result = match action.as_str() {
        "approve" | "reject" => crate::runbooks::answer(
            &handle,
            &id,
            step,
            &viewer.name,
            action == "approve",
            comment,
        )
        .await
        .map(|_| ()),
        "cancel" => crate::runbooks::cancel_as(&handle, &id, &viewer.name).await,
        "again" => match start_again(&handle, &id, &viewer.name).await {
            // The new run's page, not this one's.
            Ok(new) => return see_other(&format!("/runs/{new}")),
            Err(error) => Err(error),
        },
        other => Err(ApiError::new(
            Code::NotFound,
            format!("no run action `{other}`"),
        )),
    };
    let back = match form.back.as_deref() {
        Some("approvals") => "/approvals".to_string(),
        _ => page,
    };
    match result {
        Ok(()) => see_other(&back),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

/// Starts run `id`'s runbook again with its parameters, target, mode and incident, as `by`; the
/// new run's id. Only a runbook of the config can be started by hand, not a rule's own steps.
async fn start_again(handle: &Handle, id: &str, by: &str) -> Result<String, ApiError> {
    let Some(run) = handle
        .store()
        .run(id)
        .await
        .map_err(crate::read::store_error)?
    else {
        return Err(ApiError::new(
            Code::NotFound,
            format!("no run has the id `{id}`"),
        ));
    };
    let params = run.plan.params.clone().into_iter().collect();
    let plan = handle
        .start_runbook_for(
            &run.runbook,
            &params,
            Some(run.target.clone()),
            run.dry_run,
            by,
            run.incident_id,
        )
        .await
        .map_err(|error| crate::runbooks::start_error(handle, &run.runbook, error))?;
    Ok(plan.id)
}

async fn approvals(State(handle): State<Handle>, SignedIn { viewer, ui }: SignedIn) -> Response {
    // Every waiting approval is shown; the buttons only where this viewer may answer.
    match crate::runbooks::waiting(&handle, &viewer.name, viewer.can_write, true).await {
        Ok(approvals) => ui.page(
            "approvals.html",
            Some(&viewer),
            context! { now => handle.clock().now(), approvals => Value::from_serialize(&approvals) },
        ),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

#[derive(Deserialize, Default)]
struct SilencesQuery {
    #[serde(default)]
    expired: Option<String>,
    /// A new silence's matchers and comment, filled in from a link ("silence this alert").
    #[serde(default)]
    matchers: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

/// The lines of a matchers field, each one entry of a silence.
fn matcher_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// `GET /silences`: silences newest first, and a form for a new one.
async fn silences(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    query: Result<Query<SilencesQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(error) => return ui.error(Some(&viewer), invalid_query(error)),
    };
    let expired = query.expired.is_some_and(|value| !value.is_empty());
    let form = SilenceForm {
        duration: "2h".into(),
        matchers: query.matchers.unwrap_or_default(),
        comment: query.comment.unwrap_or_default(),
        ..SilenceForm::default()
    };
    match silences_page(&handle, expired, &form, false).await {
        Ok(values) => ui.page("silences.html", Some(&viewer), values),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

/// The silences page; with `preview`, the alerts firing now that the form's matchers would mute,
/// or why a line does not parse.
async fn silences_page(
    handle: &Handle,
    expired: bool,
    form: &SilenceForm,
    preview: bool,
) -> Result<Value, ApiError> {
    let now = handle.clock().now();
    let listed: Vec<serde_json::Value> = handle
        .store()
        .silences(expired, now)
        .await
        .map_err(crate::read::store_error)?
        .iter()
        .map(|silence| crate::silences::shown(silence, now))
        .collect();
    let mut muted = None;
    let mut problem = None;
    if preview {
        let mut matchers = Vec::new();
        for line in matcher_lines(&form.matchers) {
            match matcher::parse_list(&line) {
                Ok(parsed) => matchers.extend(parsed),
                Err(error) => {
                    problem = Some(format!("`{line}`: {error}"));
                    break;
                }
            }
        }
        if matchers.is_empty() && problem.is_none() {
            problem = Some("write at least one matcher, such as service=\"checkout\"".into());
        }
        if problem.is_none() {
            muted = Some(
                crate::alertmanager::active_alerts(handle)
                    .await?
                    .into_iter()
                    .filter(|(member, _)| matcher::all_match(&matchers, &member.labels))
                    .map(|(member, _)| member)
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(context! {
        now,
        silences => Value::from_serialize(&listed),
        expired,
        matchers => form.matchers,
        duration => form.duration,
        comment => form.comment,
        preview => muted,
        problem,
    })
}

#[derive(Deserialize, Default)]
struct SilenceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    matchers: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    comment: String,
    /// `preview` shows what the silence would mute now; anything else creates it.
    #[serde(default)]
    action: String,
}

/// `POST /silences`: previews or creates a silence, as the form's button says.
async fn create_silence(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    Form(form): Form<SilenceForm>,
) -> Response {
    if let Err(refused) = may_change(&ui, &viewer, &form.csrf) {
        return *refused;
    }
    if form.action == "preview" {
        return match silences_page(&handle, false, &form, true).await {
            Ok(values) => ui.page("silences.html", Some(&viewer), values),
            Err(error) => ui.error(Some(&viewer), error),
        };
    }
    let new = crate::silences::NewSilence {
        matchers: matcher_lines(&form.matchers),
        duration: Some(form.duration),
        comment: form.comment,
        ..Default::default()
    };
    match crate::silences::create_as(&handle, &viewer.name, new).await {
        Ok(_) => see_other("/silences"),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

async fn expire_silence(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = may_change(&ui, &viewer, &form.csrf) {
        return *refused;
    }
    match crate::silences::expire_as(&handle, &id, &viewer.name).await {
        Ok(_) => see_other("/silences"),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

/// `GET /rules`: every rule with what it matches and runs, its guards as configured and what they
/// hold now, and the targets loop detection disabled it for.
async fn rules(State(handle): State<Handle>, SignedIn { viewer, ui }: SignedIn) -> Response {
    let rules = crate::rules::every_rule(&handle);
    ui.page(
        "rules.html",
        Some(&viewer),
        context! { now => handle.clock().now(), rules => Value::from_serialize(&rules) },
    )
}

/// `GET /slos`: every SLO the daemon evaluates, per series: the error budget left, the burn rate
/// over each window, the time to exhaustion, the alerts firing.
async fn slos(State(handle): State<Handle>, SignedIn { viewer, ui }: SignedIn) -> Response {
    let slos = handle.slos().all();
    ui.page(
        "slos.html",
        Some(&viewer),
        context! { now => handle.clock().now(), slos => Value::from_serialize(&slos) },
    )
}

/// `GET /health`: ingest per source, the journal's commits, what is open and running, the runs
/// that need a person, and detection and recovery times per week.
async fn health_page(State(handle): State<Handle>, SignedIn { viewer, ui }: SignedIn) -> Response {
    match health::figures(&handle, &ui.previous).await {
        Ok(figures) => ui.page(
            "health.html",
            Some(&viewer),
            context! { now => handle.clock().now(), health => Value::from_serialize(&figures) },
        ),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

/// `GET /detectors`: every anomaly detector, each series with its latest value, score, expected
/// range and state.
async fn detectors(State(handle): State<Handle>, SignedIn { viewer, ui }: SignedIn) -> Response {
    let detectors = handle.detectors().all();
    ui.page(
        "detectors.html",
        Some(&viewer),
        context! { now => handle.clock().now(), detectors => Value::from_serialize(&detectors) },
    )
}

#[derive(Deserialize)]
struct EnableForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    target: String,
}

async fn enable_rule(
    State(handle): State<Handle>,
    SignedIn { viewer, ui }: SignedIn,
    Path(rule): Path<String>,
    Form(form): Form<EnableForm>,
) -> Response {
    if let Err(refused) = may_change(&ui, &viewer, &form.csrf) {
        return *refused;
    }
    match crate::rules::enable_as(&handle, &rule, &form.target, &viewer.name).await {
        Ok(_) => see_other("/rules"),
        Err(error) => ui.error(Some(&viewer), error),
    }
}

#[derive(Deserialize)]
struct LiveQuery {
    /// The count of changes the page was drawn at; anything but a number is no count.
    #[serde(default)]
    since: Option<String>,
}

/// `GET /live?since=N`: server-sent events, a `changed` whenever the count of changes moves (at
/// most every half second), and at once when it is not the `since` the page was drawn at: a
/// change between drawing the page and opening this stream is not missed. A comment every 15 s
/// keeps proxies from closing the stream.
async fn live(
    State(handle): State<Handle>,
    Extension(ui): Extension<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Response {
    if ui.sessions.viewer(&handle, &headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut changes = handle.changes().subscribe();
    let since = query.since.and_then(|since| since.parse::<u64>().ok());
    let stale = since.is_some_and(|since| since != *changes.borrow_and_update());
    let stream = futures::stream::unfold((changes, stale), |(mut changes, stale)| async move {
        if !stale {
            changes.changed().await.ok()?;
            // Coalesce a burst of commits into one refresh.
            tokio::time::sleep(Duration::from_millis(500)).await;
            changes.borrow_and_update();
        }
        let event = SseEvent::default().event("changed").data("journal");
        Some((Ok::<_, std::convert::Infallible>(event), (changes, false)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The stylesheet and the script, built into the binary.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (include_str!("assets/app.css"), "text/css; charset=utf-8"),
        "app.js" => (
            include_str!("assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `{{ url|web_link }}`: the URL if it is `http` or `https`, else nothing. Links come from alert
/// payloads (`generatorURL`, `runbook_url`), and a `javascript:` one must not become a link.
fn web_link(value: Value) -> String {
    let text = value.as_str().unwrap_or("").trim();
    let scheme = text
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => text.to_string(),
        _ => String::new(),
    }
}

/// `{{ at|when }}`: a time as `2026-12-07 23:40:12Z`.
fn when(value: Value) -> String {
    parse_time(&value)
        .map(|at| at.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `{{ at|clock }}`: the time of day to the millisecond, `23:40:12.345`, for lines of one timeline.
fn clock(value: Value) -> String {
    parse_time(&value)
        .map(|at| at.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

/// `{{ at|ago(now) }}`: how long before `now`, as `5m ago`.
fn ago(value: Value, now: Value) -> String {
    match (parse_time(&value), parse_time(&now)) {
        (Some(at), Some(now)) => {
            let seconds = (now - at).num_seconds();
            if seconds < 0 {
                "just now".to_string()
            } else {
                format!("{} ago", words(seconds as f64))
            }
        }
        _ => String::new(),
    }
}

/// `{{ end|seconds_since(start) }}`: the seconds between two times.
fn seconds_since(end: Value, start: Value) -> Option<f64> {
    let (end, start) = (parse_time(&end)?, parse_time(&start)?);
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

/// `{{ value|number }}`: a measurement to four significant digits, `—` when there is none.
fn number(value: Value) -> String {
    match f64::try_from(value) {
        // Counts and gauges of whole things read as integers.
        Ok(value) if value.fract() == 0.0 && value.abs() < 1e15 => format!("{value:.0}"),
        Ok(value) if value.is_finite() => {
            let magnitude = value.abs();
            if !(0.001..1e6).contains(&magnitude) {
                format!("{value:.3e}")
            } else {
                let digits = if magnitude >= 1000.0 {
                    0
                } else {
                    (3 - magnitude.log10().floor().max(-3.0) as i32).clamp(0, 6) as usize
                };
                format!("{value:.digits$}")
            }
        }
        _ => "—".to_string(),
    }
}

/// `{{ seconds|took }}`: a duration as `4m 12s`.
fn took(value: Value) -> String {
    match f64::try_from(value) {
        Ok(seconds) if seconds.is_finite() => words(seconds.max(0.0)),
        _ => String::new(),
    }
}

fn words(seconds: f64) -> String {
    if seconds < 10.0 {
        return format!("{seconds:.1}s");
    }
    let seconds = seconds.round() as i64;
    let (days, hours, minutes, rest) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{rest}s"),
        (0, 0, _) => format!("{minutes}m {rest}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/incidents/4")), "/incidents/4");
        assert_eq!(
            local_path(Some("/runs?status=failed")),
            "/runs?status=failed"
        );
        for foreign in [
            "//evil.example/x",
            "https://evil.example",
            "/\\evil.example",
            "",
        ] {
            assert_eq!(local_path(Some(foreign)), "/incidents", "{foreign}");
        }
        assert_eq!(local_path(None), "/incidents");
    }

    #[test]
    fn only_web_urls_become_links() {
        assert_eq!(web_link(Value::from("https://x/graph")), "https://x/graph");
        assert_eq!(web_link(Value::from("HTTP://x")), "HTTP://x");
        for other in [
            "javascript:alert(1)",
            " JavaScript:alert(1)",
            "data:text/html,x",
            "//x",
            "",
        ] {
            assert_eq!(web_link(Value::from(other)), "", "{other}");
        }
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(number(Value::from(0.0)), "0");
        assert_eq!(number(Value::from(12.3456)), "12.35");
        assert_eq!(number(Value::from(0.012345)), "0.01235");
        assert_eq!(number(Value::from(1234.6)), "1235");
        assert_eq!(number(Value::from(2.5e7)), "25000000");
        assert_eq!(number(Value::from(2.55e7)), "25500000");
        assert_eq!(number(Value::from(421.0)), "421");
        assert_eq!(number(Value::from(2.5e-5)), "2.500e-5");
        assert_eq!(number(Value::from(())), "—");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(words(0.3), "0.3s");
        assert_eq!(words(42.0), "42s");
        assert_eq!(words(252.0), "4m 12s");
        assert_eq!(words(7260.0), "2h 1m");
        assert_eq!(words(90_000.0), "1d 1h");
    }

    /// WCAG's contrast ratio of two `#rrggbb` colours.
    fn contrast(a: &str, b: &str) -> f64 {
        let luminance = |hex: &str| {
            let channel = |at: usize| {
                let value = f64::from(u8::from_str_radix(&hex[at..at + 2], 16).unwrap()) / 255.0;
                if value <= 0.039_28 {
                    value / 12.92
                } else {
                    ((value + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
        };
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    /// The `--name: #rrggbb` variables of the stylesheet's block that starts with `selector`.
    fn palette(selector: &str) -> std::collections::HashMap<String, String> {
        let css = include_str!("assets/app.css");
        let start = css.find(selector).expect("the theme's block") + selector.len();
        let block = &css[start..start + css[start..].find('}').unwrap()];
        block
            .split(';')
            .filter_map(|declaration| {
                let (name, value) = declaration.split_once(':')?;
                let name = name.trim().rsplit("--").next()?.trim();
                let value = value.trim();
                (value.starts_with('#') && value.len() == 7).then(|| (name.into(), value.into()))
            })
            .collect()
    }

    #[test]
    fn text_passes_wcag_aa_contrast_in_both_themes() {
        let pairs = [
            ("fg", "bg"),
            ("muted", "bg"),
            ("link", "bg"),
            ("fg", "panel"),
            ("muted", "panel"),
            ("link", "panel"),
            ("on-link", "link"),
            ("open", "open-bg"),
            ("ack", "ack-bg"),
            ("mitigated", "mitigated-bg"),
            ("ok", "ok-bg"),
            ("bad", "bad-bg"),
            ("open", "bg"),
            ("ack", "bg"),
            ("ok", "bg"),
            ("bad", "bg"),
        ];
        for theme in [
            ":root {",
            ":root[data-theme=\"dark\"] {",
            ":root:not([data-theme=\"light\"]) {",
        ] {
            let colours = palette(theme);
            for (text, background) in pairs {
                let ratio = contrast(&colours[text], &colours[background]);
                assert!(ratio >= 4.5, "{theme} {text} on {background}: {ratio:.2}");
            }
        }
    }

    #[test]
    fn every_template_compiles() {
        let ui = Ui::new(homeostat_engine::Changes::default());
        for (name, _) in TEMPLATES {
            assert!(ui.templates.get_template(name).is_ok(), "{name}");
        }
    }
}
