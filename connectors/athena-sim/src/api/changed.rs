//! `/v1/{practiceid}/{feed}/changed[...]`: subscription management and the destructive poll
//! (§4.2, §4.4). The feed logic itself lives in `crate::feeds`.

use axum::http::StatusCode;
use chrono::{Duration as ChronoDuration, Utc};
use serde_json::{Value, json};

use crate::feeds::{FeedDef, SubOp};
use crate::state::SimState;
use crate::util::{ApiError, ApiResult, Params, parse_eastern};

/// Default and maximum `limit` of a poll.
const DEFAULT_LIMIT: usize = 1500;
const MAX_LIMIT: usize = 5000;
/// How long processed rows stay available to `showprocessed*` windows.
const RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(3);

/// `GET /{feed}/changed/subscription/events`.
pub fn events(def: &FeedDef) -> Value {
    json!({"subscriptions": def.events.iter().map(|e| json!({"eventname": e})).collect::<Vec<_>>()})
}

/// `GET /{feed}/changed/subscription`.
pub fn status(state: &SimState, pid: u64, def: &'static FeedDef) -> ApiResult {
    state.read(pid, |p| {
        let f = p.feeds.get_mut(def.path).expect("feed");
        f.settle(def, Utc::now());
        let (status, events) = f.status(def);
        let mut v = json!({
            "status": status,
            "subscriptions": events.iter().map(|e| json!({"eventname": e})).collect::<Vec<_>>(),
        });
        if let Some(d) = f.active.as_ref().and_then(|s| s.departments.clone()) {
            v["departmentids"] = json!(d);
        }
        Ok(v)
    })
}

/// `POST` (subscribe) or `DELETE` (unsubscribe) `/{feed}/changed/subscription`.
pub fn change_subscription(
    state: &SimState,
    pid: u64,
    def: &'static FeedDef,
    params: &Params,
    subscribe: bool,
) -> ApiResult {
    let event = params.get("eventname").map(str::to_string);
    if let Some(e) = &event
        && !def.events.contains(&e.as_str())
    {
        return Err(ApiError::invalid(
            "eventname",
            "The eventname is not valid for this feed.",
        ));
    }
    let delay = ChronoDuration::from_std(state.config().subscription_delay).unwrap_or_default();
    let op_name = if subscribe {
        "SubscribeChangedData"
    } else {
        "UnsubscribeChangedData"
    };
    state.write(pid, op_name, params, |p, params| {
        let departments = {
            let d = params.list("departmentids");
            if d.is_empty() { None } else { Some(d) }
        };
        if let Some(bad) = departments.iter().flatten().find(|d| !p.has_department(d)) {
            return Err(ApiError::invalid(
                "departmentids",
                &format!("Invalid department id {bad}."),
            ));
        }
        let op = if subscribe {
            SubOp::Subscribe { event, departments }
        } else {
            SubOp::Unsubscribe { event }
        };
        let now = Utc::now();
        let f = p.feeds.get_mut(def.path).expect("feed");
        f.pending.push((now + delay, op));
        f.settle(def, now);
        Ok((json!({"success": true}), def.path.to_string()))
    })
}

/// `GET /{feed}/changed`: the destructive read; `caller` is recorded with the poll's time.
pub fn poll(
    state: &SimState,
    pid: u64,
    def: &'static FeedDef,
    params: &Params,
    caller: String,
) -> ApiResult {
    let window = match (
        params.get("showprocessedstartdatetime"),
        params.get("showprocessedenddatetime"),
    ) {
        (None, None) => None,
        (start, end) => {
            let s = match start {
                Some(s) => parse_eastern(s).ok_or_else(|| {
                    ApiError::invalid(
                        "showprocessedstartdatetime",
                        "Invalid date format; use MM/DD/YYYY HH24:MI:SS.",
                    )
                })?,
                None => chrono::DateTime::<Utc>::MIN_UTC,
            };
            let e = match end {
                // The end second is inclusive: a row processed at hh:mm:ss.400 is "at" hh:mm:ss.
                Some(e) => {
                    parse_eastern(e).ok_or_else(|| {
                        ApiError::invalid(
                            "showprocessedenddatetime",
                            "Invalid date format; use MM/DD/YYYY HH24:MI:SS.",
                        )
                    })? + ChronoDuration::milliseconds(999)
                }
                None => Utc::now(),
            };
            Some((s, e))
        }
    };
    let limit = params
        .usize("limit")
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let offset = params.usize("offset").unwrap_or(0);
    let leave = params.flag("leaveunprocessed");
    let depts = params.list("departmentid");
    let patients = params.list("patientid");
    let providers = params.list("providerid");
    state.read(pid, |p| {
        let now = Utc::now();
        let f = p.feeds.get_mut(def.path).expect("feed");
        f.settle(def, now);
        // Guess: while a first subscription is still pending (subscription_delay), polls get the
        // same 403 as with no subscription at all — setup "has not been done" yet.
        if f.active.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Changed messages require setup (subscription) that has not been done.",
            ));
        }
        if !leave {
            f.polled.push_back(crate::feeds::Poll { at: now, caller });
            if f.polled.len() > crate::feeds::MAX_POLL_TIMES {
                f.polled.pop_front();
            }
        }
        // Guess: with a showprocessed window athena returns the still-unprocessed rows *and* the
        // processed ones whose processed time is in the window (a recovery read sees everything
        // it may have lost); rows re-delivered from the window keep their first processed time.
        let selected: Vec<usize> = f
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| match (r.processed_at, window) {
                (None, _) => true,
                (Some(t), Some((s, e))) => t >= s && t <= e,
                (Some(_), None) => false,
            })
            .filter(|(_, r)| {
                depts.is_empty() || r.department_id.as_ref().is_some_and(|d| depts.contains(d))
            })
            .filter(|(_, r)| {
                patients.is_empty() || r.patient_id.as_ref().is_some_and(|x| patients.contains(x))
            })
            .filter(|(_, r)| {
                providers.is_empty()
                    || r.snapshot
                        .get("providerid")
                        .and_then(|v| v.as_str())
                        .is_some_and(|x| providers.iter().any(|p| p == x))
            })
            .map(|(i, _)| i)
            .collect();
        // Paging hazard, reproduced on purpose: the page is cut from the set that is unprocessed
        // *now*. After a destructive page those rows leave the set, so a client that follows
        // `next` (offset=limit) skips a whole page of rows. Clients must repeat the request
        // without offset until a short page instead.
        let total = selected.len();
        let page: Vec<usize> = selected.iter().skip(offset).take(limit).copied().collect();
        let items: Vec<Value> = page.iter().map(|&i| f.rows[i].snapshot.clone()).collect();
        if !leave {
            for &i in &page {
                f.rows[i].processed_at.get_or_insert(now);
            }
        }
        // athena: "all messages will eventually be deleted". Guess: processed rows are kept for
        // RETENTION, long enough for any recovery window a connector would use.
        f.rows
            .retain(|r| r.processed_at.is_none_or(|t| now - t < RETENTION));
        let mut out = json!({ def.items_key: items, "totalcount": total });
        if offset + page.len() < total {
            let mut pairs: Vec<(String, String)> = params
                .pairs()
                .iter()
                .filter(|(k, _)| k != "offset" && k != "limit")
                .cloned()
                .collect();
            pairs.push(("limit".into(), limit.to_string()));
            pairs.push(("offset".into(), (offset + limit).to_string()));
            let q = serde_urlencoded::to_string(&pairs).unwrap_or_default();
            out["next"] = json!(format!("/v1/{pid}/{}/changed?{q}", def.path));
        }
        Ok(out)
    })
}
