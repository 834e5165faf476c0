//! Domain events: their stable names, schema versions, JSON form and upcasting.

use std::fmt::Debug;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// An event enum of one aggregate.
///
/// Variants are named in the past tense and serialise as `{"type": "<Name>", "data": {...}}`
/// (serde's adjacently tagged form: `#[serde(tag = "type", content = "data")]`). Only `data`
/// is stored, as the message body; the name and schema version travel in CloudEvents headers.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// Every event name of the enum with its *current* schema version. Stored events of an
    /// older version are upcast with [`DomainEvent::upcasters`] on read.
    const SCHEMAS: &'static [(&'static str, u32)];

    /// The stable name of this event (`StockReceived`).
    fn event_type(&self) -> &'static str;

    /// The upcasting chain of this enum; none by default.
    fn upcasters() -> Upcasters {
        Upcasters::default()
    }

    /// Current schema version of this event's type.
    fn schema_version(&self) -> u32 {
        current_version::<Self>(self.event_type()).unwrap_or(1)
    }
}

/// The current schema version of `event_type` in `E`, or `None` if `E` does not know it.
pub fn current_version<E: DomainEvent>(event_type: &str) -> Option<u32> {
    E::SCHEMAS.iter().find(|(name, _)| *name == event_type).map(|(_, version)| *version)
}

/// Serialises an event to its body (the `data` of the adjacently tagged form).
///
/// # Errors
/// When the enum does not serialise to `{"type", "data"}`.
pub fn encode_data<E: DomainEvent>(event: &E) -> Result<Vec<u8>, String> {
    // Fast path: serialise once and cut the data out of `{"type":"<Name>","data":<data>}`,
    // the exact compact form serde writes for adjacently tagged variants.
    let tagged = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let name = event.event_type();
    let prefix_len = br#"{"type":""#.len() + name.len() + br#"","data":"#.len();
    if tagged.len() > prefix_len
        && tagged.starts_with(br#"{"type":""#)
        && tagged[9..9 + name.len()] == *name.as_bytes()
        && tagged[9 + name.len()..prefix_len] == *br#"","data":"#
        && tagged.last() == Some(&b'}')
    {
        return Ok(tagged[prefix_len..tagged.len() - 1].to_vec());
    }
    match serde_json::to_value(event).map_err(|e| e.to_string())? {
        Value::Object(mut map) => {
            let data = map.remove("data").unwrap_or(Value::Object(Default::default()));
            serde_json::to_vec(&data).map_err(|e| e.to_string())
        }
        other => Err(format!(
            "event {} serialised to {other}; expected {{\"type\", \"data\"}} (serde tag = \"type\", content = \"data\")",
            event.event_type()
        )),
    }
}

/// Builds an event from its name and (already upcast) data.
///
/// # Errors
/// The serde message when `data` does not fit the event's current shape.
pub fn decode_data<E: DomainEvent>(event_type: &str, data: Value) -> Result<E, String> {
    let tagged = serde_json::json!({ "type": event_type, "data": data });
    serde_json::from_value(tagged).map_err(|e| e.to_string())
}

/// One upcasting step: turns the data of `version` into the data of `version + 1`.
pub type UpcastFn = fn(Value) -> Result<Value, String>;

/// The upcasting chains of one event enum: for each (event type, version) the step to the next
/// version. Events are stored as written, forever; readers bring them up to date.
#[derive(Default, Clone)]
pub struct Upcasters {
    steps: Vec<(&'static str, u32, UpcastFn)>,
}

impl Upcasters {
    /// Registers the step from `from_version` to `from_version + 1` of `event_type`.
    #[must_use]
    pub fn with(mut self, event_type: &'static str, from_version: u32, step: UpcastFn) -> Self {
        self.steps.retain(|(name, from, _)| (*name, *from) != (event_type, from_version));
        self.steps.push((event_type, from_version, step));
        self
    }

    /// Brings `data` of `event_type` at `version` up to `target`.
    ///
    /// # Errors
    /// A message naming the missing step, a version newer than `target`, or the step's error.
    pub fn upcast(&self, event_type: &str, mut version: u32, target: u32, mut data: Value) -> Result<Value, String> {
        if version > target {
            return Err(format!("schema version {version} is newer than this reader's {target}; upgrade the reader"));
        }
        while version < target {
            let step = self
                .steps
                .iter()
                .find(|(name, from, _)| *name == event_type && *from == version)
                .map(|(_, _, step)| step)
                .ok_or_else(|| format!("no upcaster from version {version} of {event_type}"))?;
            data = step(data).map_err(|e| format!("upcasting {event_type} v{version}: {e}"))?;
            version += 1;
        }
        Ok(data)
    }
}

impl Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut steps: Vec<_> = self.steps.iter().map(|(name, from, _)| (name, from)).collect();
        steps.sort();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Ev {
        Added { qty: u32, source: String },
        Reset {},
    }

    impl DomainEvent for Ev {
        const SCHEMAS: &'static [(&'static str, u32)] = &[("Added", 3), ("Reset", 1)];
        fn event_type(&self) -> &'static str {
            match self {
                Ev::Added { .. } => "Added",
                Ev::Reset {} => "Reset",
            }
        }
        fn upcasters() -> Upcasters {
            Upcasters::default().with("Added", 1, |v| Ok(json!({ "qty": v["n"], "note": null }))).with(
                "Added",
                2,
                |mut v| {
                    v["source"] = json!("unknown");
                    Ok(v)
                },
            )
        }
    }

    #[test]
    fn data_round_trips_without_the_tag() {
        let ev = Ev::Added { qty: 3, source: "po".into() };
        let body = encode_data(&ev).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"qty": 3, "source": "po"}));
        let back: Ev = decode_data("Added", serde_json::from_slice(&body).unwrap()).unwrap();
        assert_eq!(back, ev);
        assert_eq!(encode_data(&Ev::Reset {}).unwrap(), b"{}");
        let nested = Ev::Added { qty: 1, source: "a \"}\" b".into() };
        let body = encode_data(&nested).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"qty": 1, "source": "a \"}\" b"}));
        assert_eq!(ev.schema_version(), 3);
    }

    #[test]
    fn a_chain_of_steps_brings_old_data_to_the_current_version() {
        let data = Ev::upcasters().upcast("Added", 1, 3, json!({"n": 7})).unwrap();
        let ev: Ev = decode_data("Added", data).unwrap();
        assert_eq!(ev, Ev::Added { qty: 7, source: "unknown".into() });
    }

    #[test]
    fn missing_steps_and_future_versions_are_errors() {
        let ups = Ev::upcasters();
        assert!(ups.upcast("Reset", 0, 1, json!({})).unwrap_err().contains("no upcaster"));
        assert!(ups.upcast("Added", 4, 3, json!({})).unwrap_err().contains("newer"));
    }
}
