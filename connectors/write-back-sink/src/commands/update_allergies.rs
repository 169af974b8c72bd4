//! `UpdateAllergies`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::UpdateAllergies` (data only).
//!
//! athena's `PUT /chart/{patientid}/allergies` replaces the patient's whole list, so an
//! allergy is added by reading the list, merging, and writing it all back. Two writers that
//! interleave read-merge-write lose one of the writes. The sink prevents that in two layers
//! (decision record 0020): commands for one patient share the Kafka key `practice/patient`, so
//! the sink runs them one at a time in order; and after writing, it reads the list again and,
//! when one of its entries is missing (a writer outside the sink replaced the list meanwhile),
//! merges and writes again, a bounded number of times.

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::UpdateAllergies;
use serde_json::{Map, Value, json};

use super::chart::{
    bad, codings, date as fhir_date, invalid_error as invalid, one_source, parse, us,
};
use super::{
    AthenaCtx, Idempotency, Invalid, Performed, ReadBack, Reading, WriteBack, date, envelope, ids,
    json_str,
};

envelope!(UpdateAllergies);

/// Read-merge-write rounds before giving up for now (the error is retriable).
const ROUNDS: usize = 3;

/// The fields of an allergy athena takes on write; the rest of a listed allergy (patient id,
/// timestamps) is dropped when it is written back.
const WRITABLE: &[&str] = &[
    "allergenid",
    "allergenname",
    "reactions",
    "criticality",
    "onsetdate",
    "note",
    "categories",
    "deactivatedate",
];

/// The entries of this command in athena's shape, from the typed fields or the
/// AllergyIntolerance.
fn resolve(c: &UpdateAllergies) -> Result<Vec<Value>, Invalid> {
    one_source(!c.allergies.is_empty(), &c.fhir_resource)?;
    let mut out = Vec::new();
    match &c.fhir_resource {
        Some(text) => {
            let v = parse(text, "AllergyIntolerance", &c.patient_id)?;
            let (_, id, name) = codings(&v, "/code")
                .into_iter()
                .next()
                .ok_or(bad("AllergyIntolerance has no coded allergen"))?;
            if name.is_empty() {
                return Err(bad("AllergyIntolerance's allergen has no display or text"));
            }
            let severity = v.pointer("/reaction/0/severity").and_then(Value::as_str);
            let reactions: Vec<Value> = v
                .pointer("/reaction/0/manifestation")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|m| {
                            let (_, _, n) = codings(m, "").into_iter().next()?;
                            Some(json!({"reactionname": n, "severity": severity}))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut e = json!({"allergenid": id, "allergenname": name, "reactions": reactions});
            if let Some(c) = v.get("criticality").and_then(Value::as_str) {
                e["criticality"] = json!(c);
            }
            if let Some(d) = fhir_date(&v, &["/onsetDateTime", "/onsetPeriod/start"])? {
                e["onsetdate"] = json!(us(d));
            }
            out.push(e);
        }
        None => {
            for a in &c.allergies {
                if a.allergen_id.trim().is_empty() || a.allergen_name.trim().is_empty() {
                    return Err(Invalid::command(
                        "every allergy needs allergen_id and allergen_name",
                    ));
                }
                let reactions: Vec<Value> = a
                    .reactions
                    .iter()
                    .map(|r| json!({"reactionname": r, "severity": a.severity}))
                    .collect();
                let mut e = json!({"allergenid": a.allergen_id, "allergenname": a.allergen_name,
                    "reactions": reactions});
                for (k, v) in [
                    ("criticality", a.criticality.clone()),
                    ("onsetdate", date(a.onset_date).map(us)),
                    ("note", a.note.clone()),
                ] {
                    if let Some(v) = v {
                        e[k] = json!(v);
                    }
                }
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// The current list with `ours` merged in by allergen id (ours win), in athena's write shape.
fn merge(current: &[Value], ours: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for item in current {
        let Some(id) = json_str(item, "allergenid") else {
            continue;
        };
        if ours.iter().any(|o| json_str(o, "allergenid").as_deref() == Some(&id)) {
            continue;
        }
        let kept: Map<String, Value> = item
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| WRITABLE.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Value::Object(kept));
    }
    out.extend(ours.iter().cloned());
    out
}

/// Whether every one of `ours` is on the list.
fn all_present(list: &[Value], ours: &[Value]) -> bool {
    ours.iter().all(|o| {
        let id = json_str(o, "allergenid");
        list.iter().any(|x| json_str(x, "allergenid") == id)
    })
}

impl WriteBack for UpdateAllergies {
    /// Writing the merged list again is harmless (the merge is by allergen id), so an ambiguous
    /// answer is simply retried: read, merge, write.
    fn idempotency(&self) -> Idempotency {
        Idempotency::Natural
    }

    fn precheck(&self, _: bool) -> Result<(), Invalid> {
        resolve(self).map(|_| ())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let ours = resolve(self).map_err(invalid)?;
            let path = ChartPath::allergies(&self.patient_id);
            let query = [("departmentid", self.department_id.as_str())];
            for _ in 0..ROUNDS {
                let current = cx.practice.chart_list(&path, &query).await?;
                let merged = merge(&current, &ours);
                let form = vec![
                    ("departmentid".to_string(), self.department_id.clone()),
                    ("allergies".to_string(), Value::Array(merged).to_string()),
                ];
                cx.practice.chart_put(&path, form).await?;
                // The re-read check: another writer may have replaced the list between our
                // read and our write, or just after it.
                let after = cx.practice.chart_list(&path, &query).await?;
                if all_present(&after, &ours) {
                    let written: Vec<String> = ours
                        .iter()
                        .filter_map(|o| json_str(o, "allergenid"))
                        .collect();
                    return Ok(ids(&[
                        ("allergen_ids", &written.join(",")),
                        ("patient_id", &self.patient_id),
                    ]));
                }
            }
            Err(athena_client::Error::Transport(
                "the allergy list kept changing under the read-merge-write".into(),
            ))
        })
    }

    fn reconcile<'a>(&'a self, _p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async { Ok(ReadBack::NotApplied) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_others_and_replaces_ours_by_allergen_id() {
        let current = vec![
            json!({"allergenid": "1", "allergenname": "a", "patientid": 5, "lastmodified": "x"}),
            json!({"allergenid": "2", "allergenname": "b"}),
        ];
        let ours = vec![json!({"allergenid": "2", "allergenname": "B"}), json!({"allergenid": "3", "allergenname": "c"})];
        let m = merge(&current, &ours);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], json!({"allergenid": "1", "allergenname": "a"}));
        assert!(all_present(&m, &ours));
        assert!(!all_present(&current, &ours));
    }
}
