//! Broker configuration: Kafka's config names, from a TOML file, then `SLUICE_*`
//! environment variables, then command-line flags, over Kafka's defaults.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sluice_core::config::BrokerConfig;

/// Flattens nested TOML tables into Kafka's dotted names, so both
/// `num.partitions = 3` and `"num.partitions" = 3` work.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) -> Result<()> {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out)?;
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        toml::Value::Integer(i) => {
            out.insert(prefix.to_string(), i.to_string());
        }
        toml::Value::Boolean(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        other => bail!("config '{prefix}': unsupported value {other}"),
    }
    Ok(())
}

/// Reads the settings of a TOML file.
pub fn read_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out).with_context(|| format!("in config file {}", path.display()))?;
    Ok(out)
}

/// The config names `build` accepts.
pub const KNOWN: &[&str] = &[
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "auto.create.topics.enable",
    "message.max.bytes",
    "socket.request.max.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.index.interval.bytes",
    "default.replication.factor",
    "connection.inflight.max",
    "queued.max.request.bytes",
    "connections.max.idle.ms",
    "offsets.retention.minutes",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.size",
    "offset.metadata.max.bytes",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.enable",
    "log.cleaner.threads",
    "log.cleaner.io.max.bytes.per.second",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "transaction.state.log.num.partitions",
    "transaction.state.log.segment.bytes",
    "transaction.max.timeout.ms",
    "controller.quorum.voters",
    "broker.rack",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "replica.lag.time.max.ms",
    "replica.fetch.wait.max.ms",
    "min.insync.replicas",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
];

/// `SLUICE_NUM_PARTITIONS=3` sets `num.partitions`, like the Kafka images' `KAFKA_*`.
/// Other `SLUICE_*` variables (`SLUICE_LOG`, `SLUICE_BOOTSTRAP`, ...) are not configs.
pub fn from_env(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter_map(|(k, v)| {
        let name = k
            .strip_prefix("SLUICE_")?
            .to_ascii_lowercase()
            .replace('_', ".");
        KNOWN.contains(&name.as_str()).then_some((name, v))
    })
    .collect()
}

/// Splits `PLAINTEXT://host:port` or `host:port` into host and port.
fn host_port(key: &str, value: &str) -> Result<(String, u16)> {
    let addr = value.split(',').next().unwrap_or_default();
    let addr = addr.split_once("://").map_or(addr, |(_, a)| a);
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("config '{key}': '{value}' is not HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| anyhow!("config '{key}': bad port in '{value}'"))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

fn num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow!("config '{key}': '{value}' is not a valid number"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default + Copy>(
    key: &str,
    value: &str,
) -> Result<T> {
    let n: T = num(key, value)?;
    if n <= T::default() {
        bail!("config '{key}': must be greater than 0, got '{value}'");
    }
    Ok(n)
}

/// Applies settings in order over the defaults.
pub fn build(layers: &[BTreeMap<String, String>]) -> Result<BrokerConfig> {
    let mut c = BrokerConfig::default();
    let mut advertised = None;
    for layer in layers {
        for (key, value) in layer {
            let v = value.as_str();
            match key.as_str() {
                "node.id" | "broker.id" => c.node_id = num(key, v)?,
                "listeners" => {
                    let (host, port) = host_port(key, v)?;
                    c.listen = if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    };
                }
                "advertised.listeners" => advertised = Some(host_port(key, v)?),
                "log.dirs" | "log.dir" => c.data_dir = v.split(',').next().unwrap_or(v).to_string(),
                "num.partitions" => c.num_partitions = positive(key, v)?,
                "auto.create.topics.enable" => {
                    c.auto_create_topics_enable = v
                        .parse()
                        .map_err(|_| anyhow!("config '{key}': '{v}' is not true or false"))?
                }
                "message.max.bytes" => c.message_max_bytes = positive(key, v)?,
                "socket.request.max.bytes" => c.socket_request_max_bytes = positive(key, v)?,
                "log.segment.bytes" => c.log_segment_bytes = positive(key, v)?,
                "log.roll.ms" => c.log_roll_ms = positive(key, v)?,
                "log.roll.hours" => c.log_roll_ms = positive::<u64>(key, v)? * 3_600_000,
                "log.index.interval.bytes" => c.log_index_interval_bytes = positive(key, v)?,
                "default.replication.factor" => c.default_replication_factor = positive(key, v)?,
                "connection.inflight.max" => c.connection_inflight_max = positive(key, v)?,
                "connections.max.idle.ms" => c.connections_max_idle_ms = positive(key, v)?,
                "queued.max.request.bytes" => {
                    c.queued_max_request_bytes = match num::<i64>(key, v)? {
                        -1 => -1,
                        n if n > 0 => n,
                        _ => bail!("config '{key}': '{v}' must be positive, or -1 for no bound"),
                    }
                }
                "offsets.retention.minutes" => c.offsets_retention_minutes = positive(key, v)?,
                "offsets.topic.num.partitions" => {
                    c.offsets_topic_num_partitions = positive(key, v)?
                }
                "offsets.topic.segment.bytes" => c.offsets_topic_segment_bytes = positive(key, v)?,
                "group.min.session.timeout.ms" => {
                    c.group_min_session_timeout_ms = positive(key, v)?
                }
                "group.max.session.timeout.ms" => {
                    c.group_max_session_timeout_ms = positive(key, v)?
                }
                "group.initial.rebalance.delay.ms" => {
                    c.group_initial_rebalance_delay_ms = num(key, v)?
                }
                "group.max.size" => c.group_max_size = positive(key, v)?,
                "offset.metadata.max.bytes" => c.offset_metadata_max_bytes = positive(key, v)?,
                "log.cleaner.backoff.ms" => c.log_cleaner_backoff_ms = positive(key, v)?,
                "log.cleaner.enable" => {
                    c.log_cleaner_enable = v
                        .parse()
                        .map_err(|_| anyhow!("config '{key}': '{v}' is not true or false"))?
                }
                "log.cleaner.dedupe.buffer.size" => {
                    c.log_cleaner_dedupe_buffer_size = positive(key, v)?
                }
                "log.cleaner.threads" => c.log_cleaner_threads = positive(key, v)?,
                "log.cleaner.io.max.bytes.per.second" => {
                    // A double in Kafka (1.7976931348623157E308 by default).
                    let rate: f64 = positive(key, v)?;
                    if rate.is_nan() {
                        bail!("config '{key}': not a number: '{v}'");
                    }
                    c.log_cleaner_io_max_bytes_per_second = if rate >= u64::MAX as f64 {
                        u64::MAX
                    } else {
                        (rate.ceil() as u64).max(1)
                    }
                }
                "log.retention.ms" => c.log_retention_ms = num(key, v)?,
                "log.retention.minutes" => c.log_retention_ms = num::<i64>(key, v)? * 60_000,
                "log.retention.hours" => c.log_retention_ms = num::<i64>(key, v)? * 3_600_000,
                "log.retention.bytes" => c.log_retention_bytes = num(key, v)?,
                "log.retention.check.interval.ms" => {
                    c.log_retention_check_interval_ms = positive(key, v)?
                }
                "transaction.state.log.num.partitions" => {
                    c.transaction_state_log_num_partitions = positive(key, v)?
                }
                "transaction.state.log.segment.bytes" => {
                    c.transaction_state_log_segment_bytes = positive(key, v)?
                }
                "transaction.max.timeout.ms" => c.transaction_max_timeout_ms = positive(key, v)?,
                "controller.quorum.voters" => {
                    sluice_net::controller::parse_voters(v)
                        .map_err(|e| anyhow!("config '{key}': {e}"))?;
                    c.controller_quorum_voters = v.to_string();
                }
                "broker.rack" => c.broker_rack = Some(v.to_string()),
                "broker.session.timeout.ms" => c.broker_session_timeout_ms = positive(key, v)?,
                "broker.heartbeat.interval.ms" => {
                    c.broker_heartbeat_interval_ms = positive(key, v)?
                }
                "replica.lag.time.max.ms" => c.replica_lag_time_max_ms = positive(key, v)?,
                "replica.fetch.wait.max.ms" => c.replica_fetch_wait_max_ms = positive(key, v)?,
                "min.insync.replicas" => c.min_insync_replicas = positive(key, v)?,
                "auto.leader.rebalance.enable" => {
                    c.auto_leader_rebalance_enable = v
                        .parse()
                        .map_err(|_| anyhow!("config '{key}': '{v}' is not true or false"))?
                }
                "leader.imbalance.check.interval.seconds" => {
                    c.leader_imbalance_check_interval_seconds = positive(key, v)?
                }
                other => bail!(
                    "unknown config '{other}' (see docs/operations.md for the supported names)"
                ),
            }
        }
    }
    let (listen_host, listen_port) = host_port("listeners", &c.listen)?;
    let (host, port) = advertised.unwrap_or_else(|| {
        let host = match listen_host.as_str() {
            "127.0.0.1" | "localhost" | "0.0.0.0" | "::" | "" => "localhost".to_string(),
            h => h.to_string(),
        };
        (host, listen_port)
    });
    c.advertised_host = host;
    c.advertised_port = port;
    if c.message_max_bytes > c.socket_request_max_bytes {
        bail!(
            "config 'message.max.bytes' ({}) must not exceed 'socket.request.max.bytes' ({})",
            c.message_max_bytes,
            c.socket_request_max_bytes
        );
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = build(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9092");
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("localhost", 9092)
        );
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.data_dir, "./data");
    }

    #[test]
    fn later_layers_win_and_bad_values_are_named() {
        let file: toml::Value = toml::from_str(
            "num.partitions = 3\n\"log.dirs\" = \"/x\"\nlisteners = \"PLAINTEXT://0.0.0.0:9999\"",
        )
        .unwrap();
        let mut flat = BTreeMap::new();
        flatten("", &file, &mut flat).unwrap();
        let c = build(&[flat.clone(), layer(&[("num.partitions", "5")])]).unwrap();
        assert_eq!(
            (c.num_partitions, c.data_dir.as_str(), c.listen.as_str()),
            (5, "/x", "0.0.0.0:9999")
        );
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("localhost", 9999)
        );
        let e = build(&[layer(&[("num.partitions", "zero")])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("num.partitions") && e.contains("zero"), "{e}");
        let e = build(&[layer(&[("num.partitons", "2")])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown config 'num.partitons'"), "{e}");
        assert!(build(&[layer(&[("num.partitions", "0")])]).is_err());
    }

    #[test]
    fn connection_limits_parse_with_kafkas_defaults() {
        assert_eq!(build(&[]).unwrap().queued_max_request_bytes, 256 << 20);
        let set = |v| build(&[layer(&[("queued.max.request.bytes", v)])]);
        assert_eq!(set("-1").unwrap().queued_max_request_bytes, -1);
        assert_eq!(set("1048576").unwrap().queued_max_request_bytes, 1 << 20);
        let e = set("0").unwrap_err().to_string();
        assert!(
            e.contains("queued.max.request.bytes") && e.contains("-1"),
            "{e}"
        );
        let idle = build(&[layer(&[("connections.max.idle.ms", "1000")])]).unwrap();
        assert_eq!(idle.connections_max_idle_ms, 1000);
        assert_eq!(build(&[]).unwrap().connections_max_idle_ms, 600_000);
    }

    #[test]
    fn log_life_configs_parse_with_kafkas_defaults() {
        let d = build(&[]).unwrap();
        assert!(d.log_cleaner_enable);
        assert_eq!(d.log_cleaner_dedupe_buffer_size, 128 << 20);
        assert_eq!(d.offsets_retention_minutes, 10_080);
        let set = |k, v| build(&[layer(&[(k, v)])]);
        assert!(
            !set("log.cleaner.enable", "false")
                .unwrap()
                .log_cleaner_enable
        );
        let e = set("log.cleaner.enable", "maybe").unwrap_err().to_string();
        assert!(e.contains("log.cleaner.enable"), "{e}");
        let e = set("offsets.retention.minutes", "0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("offsets.retention.minutes"), "{e}");
        let c = set("log.cleaner.io.max.bytes.per.second", "1048576.5").unwrap();
        assert_eq!(c.log_cleaner_io_max_bytes_per_second, 1_048_577);
        let c = set(
            "log.cleaner.io.max.bytes.per.second",
            "1.7976931348623157E308",
        )
        .unwrap();
        assert_eq!(
            c.log_cleaner_io_max_bytes_per_second,
            u64::MAX,
            "Kafka's default"
        );
        assert_eq!(d.log_cleaner_io_max_bytes_per_second, u64::MAX, "no limit");
        for bad in ["0", "-5", "NaN", "fast"] {
            let e = set("log.cleaner.io.max.bytes.per.second", bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("log.cleaner.io.max.bytes.per.second"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            set("log.cleaner.threads", "3").unwrap().log_cleaner_threads,
            3
        );
        assert_eq!(d.log_cleaner_threads, 1);
        let e = set("log.cleaner.threads", "0").unwrap_err().to_string();
        assert!(e.contains("log.cleaner.threads"), "{e}");
    }

    #[test]
    fn env_names_map_to_dotted_configs() {
        let env = from_env(
            [
                ("SLUICE_NUM_PARTITIONS".to_string(), "4".to_string()),
                ("HOME".into(), "/".into()),
            ]
            .into_iter(),
        );
        assert_eq!(env, layer(&[("num.partitions", "4")]));
    }
}
