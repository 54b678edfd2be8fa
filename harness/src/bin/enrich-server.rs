//! Runs the enrichment server of `tally_harness::enrich` by hand, until
//! Ctrl-C (or `--duration`), then prints its counters.
//!
//! ```text
//! cargo run -p tally-harness --bin enrich-server -- --port 8080 --faults 5 --seed 1
//! curl -i http://127.0.0.1:8080/v1/symbols/%5EGSPC
//! ```

use std::process::ExitCode;
use std::time::Duration;

use tally_harness::enrich::{EnrichConfig, EnrichServer, Fault, FaultKind, Latency, DEFAULT_DELAY};

const USAGE: &str = "\
usage: enrich-server [options]

  --port N              port on 127.0.0.1 (default 0: the system chooses)
  --workers N           worker threads (default 1)
  --faults PCT          inject a fault into PCT % of requests (default 0)
  --seed N              seed of the fault mix and the latency (default 0)
  --mix K,K,...         fault kinds the mix draws from (default all):
                        delay, 500, 503, malformed-status-line, truncated-body,
                        bad-chunk-size, invalid-json, reset, close-after-response
  --delay-ms N          the wait of a delay fault (default 6000)
  --fault SYMBOL=F      always answer SYMBOL with fault F (a kind, or delay:MSms);
                        may be repeated
  --latency MS|MIN-MAX  wait before each answer, fixed or uniform, in ms
  --chunked             send 200 answers chunked
  --max-connections N   connections served at once (default 1024)
  --duration SECS       stop after SECS seconds instead of at Ctrl-C
";

struct Args {
    config: EnrichConfig,
    duration: Option<Duration>,
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a valid number"))
}

fn parse_latency(value: &str) -> Result<Latency, String> {
    let ms = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("--latency: {value:?} is not MS or MIN-MAX"))
    };
    Ok(match value.split_once('-') {
        Some((min, max)) => Latency::Uniform {
            min: ms(min)?,
            max: ms(max)?,
        },
        None => Latency::Fixed(ms(value)?),
    })
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut config = EnrichConfig::new();
    let mut duration = None;
    let mut kinds: Option<Vec<FaultKind>> = None;
    let mut delay = DEFAULT_DELAY;
    while let Some(flag) = argv.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => config = config.port(number(&flag, argv.next())?),
            "--workers" => config = config.workers(number(&flag, argv.next())?),
            "--faults" => config = config.fault_percent(number(&flag, argv.next())?),
            "--seed" => config = config.seed(number(&flag, argv.next())?),
            "--max-connections" => config = config.max_connections(number(&flag, argv.next())?),
            "--delay-ms" => delay = Duration::from_millis(number(&flag, argv.next())?),
            "--duration" => {
                duration = Some(Duration::from_secs_f64(number(&flag, argv.next())?));
            }
            "--chunked" => config = config.chunked(true),
            "--latency" => {
                let value = argv.next().ok_or("--latency needs a value")?;
                config = config.latency(parse_latency(&value)?);
            }
            "--mix" => {
                let value = argv.next().ok_or("--mix needs a value")?;
                let parsed = value
                    .split(',')
                    .map(|k| k.trim().parse::<FaultKind>())
                    .collect::<Result<Vec<_>, _>>()?;
                kinds = Some(parsed);
            }
            "--fault" => {
                let value = argv.next().ok_or("--fault needs SYMBOL=FAULT")?;
                let (symbol, fault) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--fault: {value:?} is not SYMBOL=FAULT"))?;
                config = config.fault_for(symbol, fault.parse::<Fault>()?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mix: Vec<Fault> = match kinds {
        Some(kinds) => kinds.into_iter().map(|k| k.with_delay(delay)).collect(),
        None => Fault::all(delay),
    };
    Ok(Some(Args {
        config: config.mix(mix),
        duration,
    }))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("enrich-server: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match EnrichServer::start(args.config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("enrich-server: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("enrich-server listening on {}", server.url());
    println!("try: curl -i {}/v1/symbols/%5EGSPC", server.url());
    let waited = async_io::block_on(async {
        match args.duration {
            Some(d) => {
                async_io::Timer::after(d).await;
                Ok(())
            }
            None => tally_executor::ctrl_c().await,
        }
    });
    if let Err(e) = waited {
        eprintln!("enrich-server: cannot wait for Ctrl-C: {e}");
    }
    let report = server.shutdown(Duration::from_secs(1));
    println!("{:#?}", report.stats);
    println!("{}", report.runtime);
    ExitCode::SUCCESS
}
