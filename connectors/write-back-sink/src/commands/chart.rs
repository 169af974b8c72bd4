//! What the chart commands share (issue 14, decision record
//! `docs/decisions/0020-chart-write-back.md`): reading a US Core resource carried in
//! `fhir_resource` (validated; every refusal a fixed, PHI-free message), the LOINC vital-sign
//! table with its unit conversions, athena's date format, and the read-back count of a chart
//! list. Not a command itself: the command files use it.

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use chrono::NaiveDate;
use serde_json::Value;

use super::{Invalid, json_str, max_id};

/// An athena form: (name, value) pairs.
pub(crate) type Form = Vec<(String, String)>;
/// What a [`ChartAdd`] resolves to: athena's form and the read-back match (JSON pointer into a
/// listed record, the value it must have).
pub(crate) type Resolved = (Form, Vec<(&'static str, String)>);
/// Vital readings (clinical element id, value) and the date they were taken.
pub(crate) type Readings = (Vec<(String, String)>, Option<NaiveDate>);

/// The result code of a resource that does not validate.
pub(crate) const INVALID_FHIR: &str = "INVALID_FHIR_RESOURCE";

pub(crate) const SNOMED: &str = "http://snomed.info/sct";
pub(crate) const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub(crate) const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub(crate) const CPT: &str = "http://www.ama-assn.org/go/cpt";
const LOINC: &str = "http://loinc.org";
/// The code system whose codes are athena medication ids (a guess: athena publishes none).
pub(crate) const AH_MEDICATION: &str = "https://fhir.athena.io/sid/ah-medication";

/// An `INVALID_FHIR_RESOURCE` refusal.
pub(crate) fn bad(message: &'static str) -> Invalid {
    Invalid {
        code: INVALID_FHIR,
        message,
    }
}

/// A refusal met after the precheck passed (it cannot be: perform repeats the precheck's
/// checks) as athena's permanent refusal, so the command is REJECTED rather than retried.
pub(crate) fn invalid_error(i: Invalid) -> athena_client::Error {
    athena_client::Error::Business {
        status: 400,
        message: i.message.to_string(),
    }
}

/// `MM/DD/YYYY`, athena's request date format.
pub(crate) fn us(d: NaiveDate) -> String {
    athena_client::model::de::format_date(d)
}

/// Exactly one of the typed fields (`typed`: whether any is set) and `fhir_resource`.
pub(crate) fn one_source(typed: bool, fhir: &Option<String>) -> Result<(), Invalid> {
    match (typed, fhir.is_some()) {
        (true, true) => Err(Invalid::command(
            "give either the typed fields or fhir_resource, not both",
        )),
        (false, false) => Err(Invalid::command(
            "neither the typed fields nor fhir_resource is given",
        )),
        _ => Ok(()),
    }
}

/// Parses `text` as a FHIR resource of `resource_type` about `patient_id`: a JSON object of
/// that type whose subject (`subject` or `patient`), when present, names this patient (as
/// `Patient/{id}` or athena's `Patient/a-{practice}.E-{id}`).
pub(crate) fn parse(text: &str, resource_type: &str, patient_id: &str) -> Result<Value, Invalid> {
    let v: Value = serde_json::from_str(text).map_err(|_| bad("fhir_resource is not JSON"))?;
    if !v.is_object() {
        return Err(bad("fhir_resource is not a JSON object"));
    }
    if v.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
        return Err(bad(
            "fhir_resource has the wrong resourceType for this command",
        ));
    }
    let subject = v
        .pointer("/subject/reference")
        .or_else(|| v.pointer("/patient/reference"))
        .and_then(Value::as_str);
    if let Some(s) = subject {
        let id = s.strip_prefix("Patient/").unwrap_or("");
        let id = id.rsplit_once(".E-").map_or(id, |(_, x)| x);
        if id != patient_id {
            return Err(bad("fhir_resource's subject is not the command's patient"));
        }
    }
    if matches!(
        v.get("status").and_then(Value::as_str),
        Some("entered-in-error" | "cancelled" | "not-done")
    ) {
        return Err(bad("fhir_resource's status says it did not happen"));
    }
    Ok(v)
}

/// The code of the first coding in the CodeableConcept at `ptr` whose system is one of
/// `systems`.
pub(crate) fn code(v: &Value, ptr: &str, systems: &[&str]) -> Option<String> {
    codings(v, ptr)
        .into_iter()
        .find(|(s, _, _)| systems.contains(&s.as_str()))
        .map(|(_, c, _)| c)
}

/// Every (system, code, display) of the CodeableConcept at `ptr` (display: the coding's, else
/// the concept's `text`).
pub(crate) fn codings(v: &Value, ptr: &str) -> Vec<(String, String, String)> {
    let Some(cc) = v.pointer(ptr) else {
        return Vec::new();
    };
    let text = cc.get("text").and_then(Value::as_str).unwrap_or("");
    cc.get("coding")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    let code = c.get("code").and_then(Value::as_str)?;
                    Some((
                        c.get("system")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        code.to_string(),
                        c.get("display")
                            .and_then(Value::as_str)
                            .unwrap_or(text)
                            .to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The date part of the first FHIR date or dateTime found at `ptrs`; `Err` when one is there
/// but is no date.
pub(crate) fn date(v: &Value, ptrs: &[&str]) -> Result<Option<NaiveDate>, Invalid> {
    for p in ptrs {
        if let Some(s) = v.pointer(p).and_then(Value::as_str) {
            return s
                .get(..10)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                .map(Some)
                .ok_or(bad("a date in fhir_resource is not a FHIR date"));
        }
    }
    Ok(None)
}

/// How a vital sign's value converts into athena's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dim {
    /// Grams.
    Mass,
    /// Centimetres.
    Length,
    /// Degrees Fahrenheit.
    Temperature,
    /// A unit athena shares with UCUM; the listed spellings are accepted as is.
    Same(&'static [&'static str]),
}

/// LOINC vital-sign code → athena clinical element id and unit (athena's element ids as public
/// clients use them, §5.7).
const VITALS: &[(&str, &str, Dim)] = &[
    ("29463-7", "VITALS.WEIGHT", Dim::Mass),
    ("3141-9", "VITALS.WEIGHT", Dim::Mass),
    ("8302-2", "VITALS.HEIGHT", Dim::Length),
    ("8306-3", "VITALS.HEIGHT", Dim::Length),
    ("8310-5", "VITALS.TEMPERATURE", Dim::Temperature),
    (
        "8480-6",
        "VITALS.BLOODPRESSURE.SYSTOLIC",
        Dim::Same(&["mm[Hg]", "mmHg"]),
    ),
    (
        "8462-4",
        "VITALS.BLOODPRESSURE.DIASTOLIC",
        Dim::Same(&["mm[Hg]", "mmHg"]),
    ),
    (
        "8867-4",
        "VITALS.HEARTRATE",
        Dim::Same(&["/min", "{beats}/min", "beats/min", "bpm"]),
    ),
    (
        "9279-1",
        "VITALS.RESPIRATIONRATE",
        Dim::Same(&["/min", "{breaths}/min", "breaths/min"]),
    ),
    ("39156-5", "VITALS.BMI", Dim::Same(&["kg/m2", "kg/m^2"])),
    ("3150-0", "VITALS.INHALEDO2CONCENTRATION", Dim::Same(&["%"])),
];

/// The blood-pressure panel: its values are in `component`s.
const BP_PANEL: &str = "85354-9";

/// `value` in `unit` converted to athena's unit for `dim`.
fn convert(dim: Dim, value: f64, unit: &str) -> Result<f64, Invalid> {
    let factor = |f: f64| Ok(value * f);
    match dim {
        Dim::Mass => match unit {
            "g" => factor(1.0),
            "kg" => factor(1000.0),
            "[lb_av]" | "lb" | "lbs" => factor(453.592_37),
            "[oz_av]" | "oz" => factor(28.349_523_125),
            _ => Err(bad("body weight unit is not g, kg, [lb_av] or [oz_av]")),
        },
        Dim::Length => match unit {
            "cm" => factor(1.0),
            "m" => factor(100.0),
            "mm" => factor(0.1),
            "[in_i]" | "in" => factor(2.54),
            "[ft_i]" | "ft" => factor(30.48),
            _ => Err(bad("body height unit is not cm, m, mm, [in_i] or [ft_i]")),
        },
        Dim::Temperature => match unit {
            "[degF]" | "degF" | "°F" => factor(1.0),
            "Cel" | "°C" | "degC" => Ok(value * 9.0 / 5.0 + 32.0),
            _ => Err(bad("body temperature unit is not Cel or [degF]")),
        },
        Dim::Same(units) => {
            if units.contains(&unit) {
                factor(1.0)
            } else {
                Err(bad("a vital sign's unit is not the one athena records"))
            }
        }
    }
}

/// athena's text for a converted value: grams whole, the rest to two decimals, no trailing
/// zeros.
fn render(dim: Dim, v: f64) -> String {
    if dim == Dim::Mass {
        return format!("{}", v.round() as i64);
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One reading of a LOINC `code` with a `valueQuantity` → (element id, value).
fn reading(code: &str, q: Option<&Value>) -> Result<(String, String), Invalid> {
    let &(_, element, dim) = VITALS
        .iter()
        .find(|(c, _, _)| *c == code)
        .ok_or(bad("Observation code is not a supported LOINC vital sign"))?;
    let q = q.ok_or(bad("a vital sign has no valueQuantity"))?;
    let value = q
        .get("value")
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or(bad("a vital sign's value is not a non-negative number"))?;
    let unit = q
        .get("code")
        .or_else(|| q.get("unit"))
        .and_then(Value::as_str)
        .ok_or(bad("a vital sign's valueQuantity has no unit"))?;
    let v = convert(dim, value, unit)?;
    Ok((element.to_string(), render(dim, v)))
}

/// A US Core vital-signs Observation → athena readings (element id, value) and the date taken.
pub(crate) fn vitals(obs: &Value) -> Result<Readings, Invalid> {
    let category_ok = obs
        .get("category")
        .and_then(Value::as_array)
        .is_none_or(|cats| {
            cats.iter().any(|c| {
                c.get("coding")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x["code"] == "vital-signs"))
            })
        });
    if !category_ok {
        return Err(bad("Observation is not in the vital-signs category"));
    }
    let code = code(obs, "/code", &[LOINC]).ok_or(bad("Observation has no LOINC code"))?;
    let mut out = Vec::new();
    if code == BP_PANEL {
        for c in obs
            .get("component")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let cc = codings(c, "/code")
                .into_iter()
                .find(|(s, _, _)| s == LOINC)
                .map(|(_, c, _)| c)
                .ok_or(bad("a blood pressure component has no LOINC code"))?;
            out.push(reading(&cc, c.get("valueQuantity"))?);
        }
        if out.is_empty() {
            return Err(bad("blood pressure panel has no components"));
        }
    } else {
        out.push(reading(&code, obs.get("valueQuantity"))?);
    }
    let taken = date(obs, &["/effectiveDateTime", "/effectivePeriod/start"])?;
    Ok((out, taken))
}

/// A chart write that adds one record through a `POST` and reads back by counting the records of
/// a list that match it (`ReconcileBeforeRetry { baseline: true }`). [`chart_add!`] turns it into
/// the command's [`super::WriteBack`].
pub(crate) trait ChartAdd {
    /// The id field of athena's answer (`problemid`; `vitalids` is a list).
    const ANSWER_KEY: &'static str;
    /// The id field of a listed record (`problemid`, `vitalid`).
    const LIST_ID_KEY: &'static str;
    /// The id's name in the result (`problem_id`).
    const RESULT_ID: &'static str;

    /// athena's form and the read-back match: (JSON pointer into a listed record, value it must
    /// have; `""` = absent), from the typed fields or the FHIR resource. `Err` is the REJECTED
    /// outcome, found before any call.
    fn resolve(&self) -> Result<Resolved, Invalid>;
    /// Where the write goes.
    fn path(&self) -> ChartPath;
    /// The list read back (default: the write's path).
    fn list_path(&self) -> ChartPath {
        self.path()
    }
    /// Ids for the result besides the new record's (patient, encounter).
    fn context_ids(&self) -> Vec<(&'static str, String)>;
}

/// A listed record's field at `ptr` as text (string or number; `""` when absent).
fn field(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// `perform` of a [`ChartAdd`]: the write, and the ids for the result.
pub(crate) async fn add<T: ChartAdd>(
    c: &T,
    p: &PracticeClient,
) -> Result<super::Ids, athena_client::Error> {
    let (form, _) = c.resolve().map_err(invalid_error)?;
    let v = p.chart_post(&c.path(), form).await?;
    let id = answer_id(&v, T::ANSWER_KEY);
    let mut pairs: Vec<(&str, String)> = vec![(T::RESULT_ID, id)];
    pairs.extend(c.context_ids());
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(super::ids(&pairs))
}

/// `matching` of a [`ChartAdd`]: the listed records that match, and the newest id.
pub(crate) async fn matching<T: ChartAdd>(
    c: &T,
    p: &PracticeClient,
) -> Result<(u32, Option<String>), athena_client::Error> {
    let (_, want) = c.resolve().map_err(invalid_error)?;
    count(p, &c.list_path(), T::LIST_ID_KEY, |v| {
        want.iter().all(|(ptr, value)| field(v, ptr) == *value)
    })
    .await
}

/// Implements [`super::WriteBack`] for a [`ChartAdd`] command.
macro_rules! chart_add {
    ($t:ident) => {
        impl $crate::commands::WriteBack for $t {
            /// No duplicate guard at athena: count matching records against a baseline.
            fn idempotency(&self) -> $crate::commands::Idempotency {
                $crate::commands::Idempotency::ReconcileBeforeRetry { baseline: true }
            }

            fn precheck(&self, _: bool) -> Result<(), $crate::commands::Invalid> {
                $crate::commands::chart::ChartAdd::resolve(self).map(|_| ())
            }

            fn perform<'a>(
                &'a self,
                cx: $crate::commands::AthenaCtx<'a>,
            ) -> $crate::commands::Performed<'a> {
                Box::pin($crate::commands::chart::add(self, cx.practice))
            }

            fn reconcile<'a>(
                &'a self,
                p: &'a athena_client::PracticeClient,
                baseline: Option<u32>,
            ) -> $crate::commands::Reading<'a> {
                Box::pin($crate::commands::reconcile_by_count(
                    self,
                    p,
                    baseline,
                    <Self as $crate::commands::chart::ChartAdd>::RESULT_ID,
                ))
            }

            fn matching<'a>(
                &'a self,
                p: &'a athena_client::PracticeClient,
            ) -> $crate::commands::Matching<'a> {
                Box::pin($crate::commands::chart::matching(self, p))
            }
        }
    };
}
pub(crate) use chart_add;

/// Appends `(name, value)` to `form` for each value that is set.
pub(crate) fn put_opt(form: &mut Form, pairs: Vec<(&str, Option<String>)>) {
    for (k, v) in pairs {
        if let Some(v) = v {
            form.push((k.to_string(), v));
        }
    }
}

/// Counts the records of the list at `path` that `hit` accepts; newest `id_key` value. A list
/// athena answers 404 for counts as empty.
pub(crate) async fn count(
    p: &PracticeClient,
    path: &ChartPath,
    id_key: &str,
    hit: impl Fn(&Value) -> bool,
) -> Result<(u32, Option<String>), athena_client::Error> {
    let list = match p.chart_list(path, &[]).await {
        Ok(l) => l,
        // No such patient or encounter holds no records; the write itself then gets athena's
        // refusal (REJECTED with its reason) instead of a FAILED baseline read.
        Err(athena_client::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let hits: Vec<String> = list
        .iter()
        .filter(|v| hit(v))
        .filter_map(|v| json_str(v, id_key))
        .collect();
    Ok((hits.len() as u32, max_id(hits)))
}

/// The first id-like field of a write's answer (`{"problemid": 5}`, `[{"vaccineid": "7"}]`,
/// `{"vitalids": [1, 2]}`).
pub(crate) fn answer_id(v: &Value, key: &str) -> String {
    let first = match v {
        Value::Array(a) => a.first().cloned().unwrap_or_default(),
        other => other.clone(),
    };
    match first.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        _ => json_str(&first, key).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obs(code: &str, value: f64, unit: &str) -> Value {
        json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": "2025-11-07T10:00:00Z",
            "valueQuantity": {"value": value, "code": unit}})
    }

    #[test]
    fn vital_signs_map_to_athena_elements_and_units() {
        let cases = [
            ("29463-7", 155.0, "[lb_av]", "VITALS.WEIGHT", "70307"),
            ("29463-7", 70.3, "kg", "VITALS.WEIGHT", "70300"),
            ("8302-2", 70.0, "[in_i]", "VITALS.HEIGHT", "177.8"),
            ("8302-2", 1.8, "m", "VITALS.HEIGHT", "180"),
            ("8310-5", 37.0, "Cel", "VITALS.TEMPERATURE", "98.6"),
            ("8867-4", 72.0, "/min", "VITALS.HEARTRATE", "72"),
            ("39156-5", 22.45, "kg/m2", "VITALS.BMI", "22.45"),
        ];
        for (code, value, unit, element, want) in cases {
            let (r, taken) = vitals(&obs(code, value, unit)).unwrap();
            assert_eq!(
                r,
                vec![(element.to_string(), want.to_string())],
                "{code} {unit}"
            );
            assert_eq!(taken, NaiveDate::from_ymd_opt(2025, 11, 7));
        }
        let bp = json!({"resourceType": "Observation", "code": {"coding": [{"system": LOINC, "code": BP_PANEL}]},
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 120, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 80, "code": "mm[Hg]"}}]});
        let (r, _) = vitals(&bp).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], ("VITALS.BLOODPRESSURE.DIASTOLIC".into(), "80".into()));
    }

    #[test]
    fn bad_resources_are_refused_without_their_content() {
        for (o, why) in [
            (obs("29463-7", 70.0, "stone"), "unit"),
            (obs("1234-5", 1.0, "kg"), "LOINC"),
            (obs("29463-7", -1.0, "kg"), "non-negative"),
        ] {
            let e = vitals(&o).unwrap_err();
            assert_eq!(e.code, INVALID_FHIR);
            assert!(e.message.contains(why), "{}", e.message);
        }
        assert!(parse("not json", "Observation", "1").is_err());
        let other =
            json!({"resourceType": "Observation", "subject": {"reference": "Patient/a-1.E-2"}});
        assert!(parse(&other.to_string(), "Observation", "3").is_err());
        assert!(parse(&other.to_string(), "Observation", "2").is_ok());
        assert!(parse(&other.to_string(), "Condition", "2").is_err());
        assert!(one_source(true, &Some("{}".into())).is_err());
        assert!(one_source(false, &None).is_err());
    }

    fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
        let path = format!(
            "{}/../../schemas/examples/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn form_of(r: Result<Resolved, Invalid>) -> std::collections::BTreeMap<String, String> {
        r.unwrap().0.into_iter().collect()
    }

    #[test]
    fn fhir_resources_become_athena_forms() {
        use athena_contracts::commands::*;
        let subject = json!({"reference": "Patient/a-195900.E-60178"});
        let imm = json!({"resourceType": "Immunization", "status": "completed", "patient": subject,
            "vaccineCode": {"coding": [{"system": CVX, "code": "208"}]},
            "occurrenceDateTime": "2025-10-01", "lotNumber": "L1",
            "doseQuantity": {"value": 0.3, "unit": "mL"}});
        let c = RecordVaccine {
            cvx: None,
            administer_date: None,
            lot_number: None,
            dose_amount: None,
            dose_units: None,
            fhir_resource: Some(imm.to_string()),
            ..example("RecordVaccine.json")
        };
        let f = form_of(c.resolve());
        assert_eq!(f["cvx"], "208");
        assert_eq!(f["administerdate"], "10/01/2025");
        assert_eq!(f["lotnumber"], "L1");
        assert_eq!(f["units"], "mL");

        let med = json!({"resourceType": "MedicationStatement", "status": "active", "subject": subject,
            "medicationCodeableConcept": {"coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"},
                {"system": AH_MEDICATION, "code": "243917"}]},
            "effectivePeriod": {"start": "2024-01-02", "end": "2024-06-30"}});
        let base: AddHistoricalMedication = example("AddHistoricalMedication.json");
        let c = AddHistoricalMedication {
            medication_id: None,
            start_date: None,
            unstructured_sig: None,
            fhir_resource: Some(med.to_string()),
            ..base.clone()
        };
        let f = form_of(c.resolve());
        assert_eq!(f["medicationid"], "243917");
        assert_eq!(f["stopdate"], "06/30/2024");
        let rx_only = med.to_string().replace(AH_MEDICATION, "urn:other");
        let c = AddHistoricalMedication {
            fhir_resource: Some(rx_only),
            ..c
        };
        assert_eq!(c.resolve().unwrap_err().code, INVALID_FHIR);

        let proc_ = json!({"resourceType": "Procedure", "status": "completed", "subject": subject,
            "code": {"coding": [{"system": CPT, "code": "44950"}]}, "performedPeriod": {"start": "2010-05-06"}});
        let c = RecordSurgicalHistory {
            procedure_code: None,
            procedure_date: None,
            fhir_resource: Some(proc_.to_string()),
            ..example("RecordSurgicalHistory.json")
        };
        let f = form_of(c.resolve());
        assert_eq!(f["procedurecode"], "44950");
        assert_eq!(f["proceduredate"], "05/06/2010");

        let dx = json!({"resourceType": "Condition", "subject": subject, "code": {"coding": [
            {"system": ICD10, "code": "I10"}, {"system": SNOMED, "code": "38341003"}, {"system": ICD10, "code": "I11.9"}]}});
        let c = AddEncounterDiagnosis {
            snomed_code: None,
            icd10_codes: vec![],
            fhir_resource: Some(dx.to_string()),
            ..example("AddEncounterDiagnosis.json")
        };
        let f = form_of(c.resolve());
        assert_eq!(f["snomedcode"], "38341003");
        assert_eq!(f["icd10codes"], "I10,I11.9");

        // A resolved Condition is refused for the problem list, with a fixed reason.
        let resolved = json!({"resourceType": "Condition", "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
            "code": {"coding": [{"system": SNOMED, "code": "1"}]}});
        let c = AddProblem {
            fhir_resource: Some(resolved.to_string()),
            ..example("AddProblem.fhir.json")
        };
        assert_eq!(c.resolve().unwrap_err().code, INVALID_FHIR);
    }

    #[test]
    fn answer_ids() {
        assert_eq!(answer_id(&json!({"vitalids": [1, 2]}), "vitalids"), "1,2");
        assert_eq!(answer_id(&json!([{"problemid": "5"}]), "problemid"), "5");
        assert_eq!(answer_id(&json!({"x": 1}), "problemid"), "");
    }
}
