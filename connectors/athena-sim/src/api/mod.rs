//! HTTP surface, one file per API area, and `build_router` wiring them with the middleware:
//! `count_layer` (outermost, every route but admin) → `fault_layer` → `api_guard`
//! (`/v1` and `/fhir` only) → handler.
//!
//! Seam for §7 (FHIR push subscriptions, a later issue): add `api/subscriptions.rs` with
//! `POST/GET/DELETE /fhir/r4/Subscription` on the guarded router, and a notifier task fed from
//! `Practice::change` (the single place every change passes through).

pub mod admin;
pub mod appointments;
pub mod changed;
pub mod chart;
pub mod claims;
pub mod documents;
pub mod export;
pub mod fhir;
pub mod oauth;
pub mod patients;
pub mod records;
pub mod reference;
pub mod subscriptions;

use axum::{
    Extension, Router,
    extract::{DefaultBodyLimit, Path, State},
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};

use crate::feeds::FEEDS;
use crate::state::SimState;
use crate::util::{Params, ok};

/// Largest accepted request body (base64 documents are big).
const BODY_LIMIT: usize = 32 * 1024 * 1024;

fn feed_routes(mut r: Router<SimState>) -> Router<SimState> {
    for def in FEEDS {
        let base = format!("/v1/{{practiceid}}/{}/changed", def.path);
        r = r
            .route(
                &base,
                get(
                    move |State(s): State<SimState>,
                          Path(pid): Path<u64>,
                          caller: Option<Extension<crate::guard::Caller>>,
                          q: Params| async move {
                        let caller = caller.map(|Extension(c)| c.0).unwrap_or_default();
                        changed::poll(&s, pid, def, &q, caller)
                            .map(ok)
                            .into_response()
                    },
                ),
            )
            .route(
                &format!("{base}/subscription"),
                get(
                    move |State(s): State<SimState>, Path(pid): Path<u64>| async move {
                        changed::status(&s, pid, def).map(ok).into_response()
                    },
                )
                .post(
                    move |State(s): State<SimState>, Path(pid): Path<u64>, q: Params| async move {
                        changed::change_subscription(&s, pid, def, &q, true)
                            .map(ok)
                            .into_response()
                    },
                )
                .delete(
                    move |State(s): State<SimState>, Path(pid): Path<u64>, q: Params| async move {
                        changed::change_subscription(&s, pid, def, &q, false)
                            .map(ok)
                            .into_response()
                    },
                ),
            )
            .route(
                &format!("{base}/subscription/events"),
                get(move || async move { ok(changed::events(def)) }),
            );
    }
    r
}

/// The whole app for `state`.
pub fn build_router(state: SimState) -> Router {
    let v1 = "/v1/{practiceid}";
    let guarded = Router::new()
        .route(&format!("{v1}/ping"), get(reference::ping))
        .route(&format!("{v1}/departments"), get(reference::departments))
        .route(&format!("{v1}/providers"), get(reference::providers))
        .route(
            &format!("{v1}/appointmenttypes"),
            get(reference::appointment_types),
        )
        .route(
            &format!("{v1}/patientappointmentreasons"),
            get(reference::appointment_reasons),
        )
        .route(
            &format!("{v1}/insurancepackages"),
            get(reference::insurance_packages),
        )
        .route(
            &format!("{v1}/providers/{{providerid}}"),
            get(reference::provider),
        )
        .route(
            &format!("{v1}/patients"),
            post(patients::post).get(patients::list),
        )
        .route(
            &format!("{v1}/patients/bestmatch"),
            get(patients::bestmatch),
        )
        .route(
            &format!("{v1}/patients/enhancedbestmatch"),
            get(patients::enhancedbestmatch),
        )
        .route(
            &format!("{v1}/patients/{{patientid}}"),
            get(patients::get_one).put(patients::put),
        )
        .route(
            &format!("{v1}/patients/{{patientid}}/recordpayment"),
            post(claims::post_recordpayment),
        )
        .route(
            &format!("{v1}/patients/{{patientid}}/collectpayment"),
            post(claims::post_collectpayment),
        )
        .route(
            &format!("{v1}/patients/{{patientid}}/documents/clinicaldocument"),
            post(documents::post_clinical).get(documents::list_clinical),
        )
        .route(
            &format!("{v1}/patients/{{patientid}}/insurances"),
            post(documents::post_insurance).get(documents::list_insurances),
        )
        .route(
            &format!("{v1}/patients/{{patientid}}/insurances/{{insuranceid}}"),
            put(documents::put_insurance).delete(documents::delete_insurance),
        )
        .route(
            &format!("{v1}/chart/{{patientid}}/problems"),
            get(reference::problems),
        )
        .route(
            &format!("{v1}/chart/{{patientid}}/allergies"),
            get(reference::allergies),
        )
        .route(
            &format!("{v1}/chart/{{patientid}}/medications"),
            get(reference::medications),
        )
        .route(
            &format!("{v1}/appointments/open"),
            get(appointments::open).post(appointments::post_open),
        )
        .route(
            &format!("{v1}/appointments/booked"),
            get(appointments::booked),
        )
        .route(
            &format!("{v1}/appointments/{{appointmentid}}"),
            get(appointments::get_one).put(appointments::put_book),
        )
        .route(
            &format!("{v1}/appointments/{{appointmentid}}/cancel"),
            put(appointments::put_cancel),
        )
        .route(
            &format!("{v1}/appointments/{{appointmentid}}/reschedule"),
            put(appointments::put_reschedule),
        )
        .route(
            &format!("{v1}/appointments/{{appointmentid}}/startcheckin"),
            post(appointments::post_startcheckin),
        )
        .route(
            &format!("{v1}/appointments/{{appointmentid}}/checkin"),
            post(appointments::post_checkin),
        )
        .route(
            &format!("{v1}/appointments/booked/{{appointmentid}}"),
            put(appointments::put_booked),
        )
        .route(
            &format!("{v1}/appointments/{{appointmentid}}/checkout"),
            post(appointments::post_checkout),
        )
        .route(
            &format!("{v1}/appointments/{{appointmentid}}/freeze"),
            put(appointments::put_freeze),
        )
        .route(
            &format!("{v1}/appointments/{{appointmentid}}/notes"),
            post(appointments::post_note).get(appointments::get_notes),
        )
        .route(
            &format!("{v1}/appointments/{{appointmentid}}/claim"),
            post(claims::post_appointment_claim),
        )
        .route(
            &format!("{v1}/appointmentcancelreasons"),
            get(appointments::cancel_reasons),
        )
        .route(
            &format!("{v1}/claims"),
            post(claims::post_claim).get(claims::list),
        )
        .route(&format!("{v1}/claims/{{claimid}}"), get(claims::get_one))
        .route("/fhir/r4/Patient", get(fhir::search_patient))
        .route("/fhir/r4/Patient/{id}", get(fhir::read_patient))
        .route(
            "/fhir/r4/Subscription",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/fhir/r4/Subscription/{id}",
            axum::routing::delete(subscriptions::delete),
        )
        .route("/fhir/r4/SubscriptionTopic", get(subscriptions::topics))
        .route("/fhir/r4/Group/{groupid}/$export", get(export::kickoff))
        .route(
            "/fhir/r4/bulkstatus/{jobid}",
            get(export::status).delete(export::delete),
        );
    let guarded = chart::routes(guarded);
    let guarded = records::routes(fhir::routes(feed_routes(guarded)))
        .route_layer(from_fn_with_state(state.clone(), crate::guard::api_guard));
    let public = Router::new()
        .route("/oauth2/v1/token", post(oauth::token))
        // File URLs behave like athena's pre-signed ones: no bearer token needed.
        .route("/fhir/r4/bulkfiles/{jobid}/{file}", get(export::file));
    let api = guarded
        .merge(public)
        .layer(from_fn_with_state(
            state.clone(),
            crate::faults::fault_layer,
        ))
        .layer(from_fn_with_state(state.clone(), crate::guard::count_layer));
    let admin = Router::new()
        .route(
            "/_sim/faults",
            post(admin::post_faults)
                .get(admin::get_faults)
                .delete(admin::delete_faults),
        )
        .route("/_sim/ledger", get(admin::ledger))
        .route("/_sim/revoke", post(admin::revoke))
        .route("/_sim/scopes/withheld", put(admin::put_withheld_scopes))
        .route("/_sim/generate", post(admin::generate))
        .route("/_sim/stats", get(admin::stats))
        .route("/_sim/push/dead-letters", get(admin::dead_letters))
        .route(
            "/_sim/push/subscriptions/{id}/replay",
            post(admin::replay_dead_letters),
        )
        .route(
            "/_sim/practices/{practiceid}/patients",
            post(admin::add_patient),
        )
        .route("/_sim/practices/{practiceid}/slots", post(admin::add_slots));
    api.merge(admin)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn not_found() -> Response {
    crate::util::ApiError::not_found("The requested resource does not exist.").into_response()
}
