//! Typed parameters and row values, in PostgreSQL's binary format, on
//! postgres-protocol's encoders.
//!
//! | Rust | PostgreSQL |
//! | --- | --- |
//! | `bool` | `bool` |
//! | `i16`, `i32`, `i64` | `int2`, `int4`, `int8` (reading widens: an `i64` reads any of them) |
//! | `f32`, `f64` | `float4`, `float8` |
//! | `&str`, `String` | `text` (reads `text`, `varchar`, `bpchar`, `name`) |
//! | `&[u8]`, `Vec<u8>` | `bytea` |
//! | [`Uuid`] | `uuid` |
//! | [`Date`] | `date` |
//! | [`Timestamp`], `SystemTime` | `timestamptz` (reads `timestamp` too) |
//! | [`Json`], [`Jsonb`] | `json`, `jsonb` (raw JSON text) |
//! | `Option<T>` | `NULL` as `None` |

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use postgres_protocol::types;

/// A PostgreSQL type's object id.
pub type Oid = u32;

/// The type ids this client knows.
pub mod oid {
    use super::Oid;
    /// `bool`
    pub const BOOL: Oid = 16;
    /// `bytea`
    pub const BYTEA: Oid = 17;
    /// `name`
    pub const NAME: Oid = 19;
    /// `int8`
    pub const INT8: Oid = 20;
    /// `int2`
    pub const INT2: Oid = 21;
    /// `int4`
    pub const INT4: Oid = 23;
    /// `text`
    pub const TEXT: Oid = 25;
    /// `json`
    pub const JSON: Oid = 114;
    /// `float4`
    pub const FLOAT4: Oid = 700;
    /// `float8`
    pub const FLOAT8: Oid = 701;
    /// `unknown`
    pub const UNKNOWN: Oid = 705;
    /// `bpchar`
    pub const BPCHAR: Oid = 1042;
    /// `varchar`
    pub const VARCHAR: Oid = 1043;
    /// `date`
    pub const DATE: Oid = 1082;
    /// `timestamp`
    pub const TIMESTAMP: Oid = 1114;
    /// `timestamptz`
    pub const TIMESTAMPTZ: Oid = 1184;
    /// `uuid`
    pub const UUID: Oid = 2950;
    /// `jsonb`
    pub const JSONB: Oid = 3802;
}

/// Whether a parameter is NULL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsNull {
    /// The value is NULL: nothing was written.
    Yes,
    /// The value was written.
    No,
}

/// A value that can be sent as a parameter.
pub trait ToSql: Sync {
    /// The PostgreSQL type it is sent as.
    fn oid(&self) -> Oid;
    /// Writes the value in binary format, or says it is NULL.
    fn to_sql(&self, out: &mut BytesMut) -> IsNull;
}

/// A Rust type with one PostgreSQL type, so that `Option<T>` knows the type of its NULL.
pub trait SqlType {
    /// The PostgreSQL type.
    const OID: Oid;
}

/// A value that can be read from a row.
pub trait FromSql<'a>: Sized {
    /// Whether a column of type `oid` can be read as this type.
    fn accepts(oid: Oid) -> bool;
    /// Reads a non-NULL value.
    ///
    /// # Errors
    ///
    /// When the bytes are not a valid value of the type.
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, String>;
    /// Reads a NULL.
    ///
    /// # Errors
    ///
    /// Unless the type can hold NULL (`Option`).
    fn from_null(oid: Oid) -> Result<Self, String> {
        let _ = oid;
        Err("the value is NULL; read it as an Option".to_owned())
    }
}

fn boxed<T>(r: Result<T, Box<dyn std::error::Error + Sync + Send>>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

macro_rules! simple_type {
    ($t:ty, $oid:expr, $to:path, $from:path, [$($accepts:expr),*]) => {
        impl SqlType for $t {
            const OID: Oid = $oid;
        }
        impl ToSql for $t {
            fn oid(&self) -> Oid {
                $oid
            }
            fn to_sql(&self, out: &mut BytesMut) -> IsNull {
                $to(*self, out);
                IsNull::No
            }
        }
        impl<'a> FromSql<'a> for $t {
            fn accepts(oid: Oid) -> bool {
                oid == $oid $(|| oid == $accepts)*
            }
            fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
                boxed($from(raw))
            }
        }
    };
}

simple_type!(
    bool,
    oid::BOOL,
    types::bool_to_sql,
    types::bool_from_sql,
    []
);
simple_type!(i16, oid::INT2, types::int2_to_sql, types::int2_from_sql, []);
simple_type!(
    f32,
    oid::FLOAT4,
    types::float4_to_sql,
    types::float4_from_sql,
    []
);

impl SqlType for i32 {
    const OID: Oid = oid::INT4;
}
impl ToSql for i32 {
    fn oid(&self) -> Oid {
        oid::INT4
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::int4_to_sql(*self, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for i32 {
    fn accepts(oid: Oid) -> bool {
        oid == oid::INT4 || oid == oid::INT2
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        match oid {
            oid::INT2 => boxed(types::int2_from_sql(raw)).map(i32::from),
            _ => boxed(types::int4_from_sql(raw)),
        }
    }
}

impl SqlType for i64 {
    const OID: Oid = oid::INT8;
}
impl ToSql for i64 {
    fn oid(&self) -> Oid {
        oid::INT8
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::int8_to_sql(*self, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for i64 {
    fn accepts(oid: Oid) -> bool {
        matches!(oid, oid::INT8 | oid::INT4 | oid::INT2)
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        match oid {
            oid::INT2 => boxed(types::int2_from_sql(raw)).map(i64::from),
            oid::INT4 => boxed(types::int4_from_sql(raw)).map(i64::from),
            _ => boxed(types::int8_from_sql(raw)),
        }
    }
}

impl SqlType for f64 {
    const OID: Oid = oid::FLOAT8;
}
impl ToSql for f64 {
    fn oid(&self) -> Oid {
        oid::FLOAT8
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::float8_to_sql(*self, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for f64 {
    fn accepts(oid: Oid) -> bool {
        oid == oid::FLOAT8 || oid == oid::FLOAT4
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        match oid {
            oid::FLOAT4 => boxed(types::float4_from_sql(raw)).map(f64::from),
            _ => boxed(types::float8_from_sql(raw)),
        }
    }
}

fn is_text(oid: Oid) -> bool {
    matches!(
        oid,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN
    )
}

impl SqlType for &str {
    const OID: Oid = oid::TEXT;
}
impl ToSql for &str {
    fn oid(&self) -> Oid {
        oid::TEXT
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::text_to_sql(self, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for &'a str {
    fn accepts(oid: Oid) -> bool {
        is_text(oid)
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        boxed(types::text_from_sql(raw))
    }
}

impl SqlType for String {
    const OID: Oid = oid::TEXT;
}
impl ToSql for String {
    fn oid(&self) -> Oid {
        oid::TEXT
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::text_to_sql(self, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for String {
    fn accepts(oid: Oid) -> bool {
        is_text(oid)
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        boxed(types::text_from_sql(raw)).map(str::to_owned)
    }
}

impl SqlType for &[u8] {
    const OID: Oid = oid::BYTEA;
}
impl ToSql for &[u8] {
    fn oid(&self) -> Oid {
        oid::BYTEA
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::bytea_to_sql(self, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for &'a [u8] {
    fn accepts(oid: Oid) -> bool {
        oid == oid::BYTEA
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        Ok(types::bytea_from_sql(raw))
    }
}

impl SqlType for Vec<u8> {
    const OID: Oid = oid::BYTEA;
}
impl ToSql for Vec<u8> {
    fn oid(&self) -> Oid {
        oid::BYTEA
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::bytea_to_sql(self, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for Vec<u8> {
    fn accepts(oid: Oid) -> bool {
        oid == oid::BYTEA
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        Ok(types::bytea_from_sql(raw).to_vec())
    }
}

impl<T: ToSql + SqlType> ToSql for Option<T> {
    fn oid(&self) -> Oid {
        T::OID
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        match self {
            Some(v) => v.to_sql(out),
            None => IsNull::Yes,
        }
    }
}
impl<'a, T: FromSql<'a>> FromSql<'a> for Option<T> {
    fn accepts(oid: Oid) -> bool {
        T::accepts(oid)
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        T::from_sql(oid, raw).map(Some)
    }
    fn from_null(_oid: Oid) -> Result<Self, String> {
        Ok(None)
    }
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn oid(&self) -> Oid {
        (**self).oid()
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        (**self).to_sql(out)
    }
}

/// A UUID, as its 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

impl std::str::FromStr for Uuid {
    type Err = String;

    fn from_str(s: &str) -> Result<Uuid, String> {
        let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
        if hex.len() != 32 {
            return Err(format!("{s:?} is not a UUID"));
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| format!("{s:?} is not a UUID"))?;
            bytes[i] = u8::from_str_radix(text, 16).map_err(|_| format!("{s:?} is not a UUID"))?;
        }
        Ok(Uuid(bytes))
    }
}

impl SqlType for Uuid {
    const OID: Oid = oid::UUID;
}
impl ToSql for Uuid {
    fn oid(&self) -> Oid {
        oid::UUID
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::uuid_to_sql(self.0, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for Uuid {
    fn accepts(oid: Oid) -> bool {
        oid == oid::UUID
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        boxed(types::uuid_from_sql(raw)).map(Uuid)
    }
}

/// A calendar date, as PostgreSQL keeps it: days since 2000-01-01, with
/// `i32::MAX` and `i32::MIN` for `infinity` and `-infinity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date(pub i32);

/// Days from 1970-01-01 to 2000-01-01.
const UNIX_TO_PG_DAYS: i64 = 10_957;

impl Date {
    /// The date of a proleptic Gregorian year, month (1-12) and day (1-31),
    /// or `None` if there is no such day or it is out of PostgreSQL's range.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(year as i64, month, day) - UNIX_TO_PG_DAYS;
        i32::try_from(days).ok().map(Date)
    }

    /// The year, month and day.
    pub fn ymd(self) -> (i32, u32, u32) {
        let (y, m, d) = civil_from_days(self.0 as i64 + UNIX_TO_PG_DAYS);
        (y as i32, m, d)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            i32::MAX => f.write_str("infinity"),
            i32::MIN => f.write_str("-infinity"),
            _ => {
                let (y, m, d) = self.ymd();
                write!(f, "{y:04}-{m:02}-{d:02}")
            }
        }
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl SqlType for Date {
    const OID: Oid = oid::DATE;
}
impl ToSql for Date {
    fn oid(&self) -> Oid {
        oid::DATE
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::date_to_sql(self.0, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for Date {
    fn accepts(oid: Oid) -> bool {
        oid == oid::DATE
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        boxed(types::date_from_sql(raw)).map(Date)
    }
}

/// An instant, as PostgreSQL keeps a `timestamptz`: microseconds since
/// 2000-01-01 00:00:00 UTC, with `i64::MAX` and `i64::MIN` for the infinities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

/// Seconds from the Unix epoch to 2000-01-01 UTC.
const UNIX_TO_PG_SECONDS: i64 = UNIX_TO_PG_DAYS * 86_400;

impl Timestamp {
    /// The instant of a `SystemTime`, to the microsecond (rounded down), or
    /// `None` out of range.
    pub fn from_system_time(t: SystemTime) -> Option<Timestamp> {
        let micros: i64 = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).ok()?,
            Err(e) => {
                let d = e.duration();
                let whole = i64::try_from(d.as_micros()).ok()?;
                // Round toward negative infinity for instants before 1970.
                -whole - i64::from(d.as_nanos() % 1000 != 0)
            }
        };
        micros
            .checked_sub(UNIX_TO_PG_SECONDS * 1_000_000)
            .map(Timestamp)
    }

    /// The `SystemTime` of this instant, or `None` for the infinities.
    pub fn to_system_time(self) -> Option<SystemTime> {
        if self.0 == i64::MAX || self.0 == i64::MIN {
            return None;
        }
        let unix_micros = self.0 as i128 + UNIX_TO_PG_SECONDS as i128 * 1_000_000;
        if unix_micros >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_micros(unix_micros as u64))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_micros(unix_micros.unsigned_abs() as u64))
        }
    }
}

impl SqlType for Timestamp {
    const OID: Oid = oid::TIMESTAMPTZ;
}
impl ToSql for Timestamp {
    fn oid(&self) -> Oid {
        oid::TIMESTAMPTZ
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        types::timestamp_to_sql(self.0, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for Timestamp {
    fn accepts(oid: Oid) -> bool {
        oid == oid::TIMESTAMPTZ || oid == oid::TIMESTAMP
    }
    fn from_sql(_oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        boxed(types::timestamp_from_sql(raw)).map(Timestamp)
    }
}

impl SqlType for SystemTime {
    const OID: Oid = oid::TIMESTAMPTZ;
}
impl ToSql for SystemTime {
    fn oid(&self) -> Oid {
        oid::TIMESTAMPTZ
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        // Out of PostgreSQL's range on either side: the matching infinity.
        let micros = Timestamp::from_system_time(*self).map_or_else(
            || {
                if *self > UNIX_EPOCH {
                    i64::MAX
                } else {
                    i64::MIN
                }
            },
            |t| t.0,
        );
        types::timestamp_to_sql(micros, out);
        IsNull::No
    }
}
impl<'a> FromSql<'a> for SystemTime {
    fn accepts(oid: Oid) -> bool {
        Timestamp::accepts(oid)
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        Timestamp::from_sql(oid, raw)?
            .to_system_time()
            .ok_or_else(|| {
                "an infinite timestamp has no SystemTime; read it as a Timestamp".to_owned()
            })
    }
}

/// JSON text sent as `json`, or read from `json` or `jsonb`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Json<T>(pub T);

/// JSON text sent as `jsonb`, or read from `json` or `jsonb`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jsonb<T>(pub T);

/// The version byte in front of `jsonb`'s binary format.
const JSONB_VERSION: u8 = 1;

fn json_text(oid: Oid, raw: &[u8]) -> Result<&str, String> {
    let text = if oid == oid::JSONB {
        match raw.split_first() {
            Some((&JSONB_VERSION, rest)) => rest,
            _ => return Err("unknown jsonb format version".to_owned()),
        }
    } else {
        raw
    };
    std::str::from_utf8(text).map_err(|e| e.to_string())
}

impl<T: AsRef<str> + Sync> SqlType for Json<T> {
    const OID: Oid = oid::JSON;
}
impl<T: AsRef<str> + Sync> ToSql for Json<T> {
    fn oid(&self) -> Oid {
        oid::JSON
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        out.extend_from_slice(self.0.as_ref().as_bytes());
        IsNull::No
    }
}
impl<T: AsRef<str> + Sync> SqlType for Jsonb<T> {
    const OID: Oid = oid::JSONB;
}
impl<T: AsRef<str> + Sync> ToSql for Jsonb<T> {
    fn oid(&self) -> Oid {
        oid::JSONB
    }
    fn to_sql(&self, out: &mut BytesMut) -> IsNull {
        out.extend_from_slice(&[JSONB_VERSION]);
        out.extend_from_slice(self.0.as_ref().as_bytes());
        IsNull::No
    }
}
impl<'a> FromSql<'a> for Json<String> {
    fn accepts(oid: Oid) -> bool {
        oid == oid::JSON || oid == oid::JSONB
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        json_text(oid, raw).map(|s| Json(s.to_owned()))
    }
}
impl<'a> FromSql<'a> for Json<&'a str> {
    fn accepts(oid: Oid) -> bool {
        oid == oid::JSON || oid == oid::JSONB
    }
    fn from_sql(oid: Oid, raw: &'a [u8]) -> Result<Self, String> {
        json_text(oid, raw).map(Json)
    }
}

/// The name of a type id, for error messages.
pub(crate) fn type_name(oid: Oid) -> String {
    let name = match oid {
        oid::BOOL => "bool",
        oid::BYTEA => "bytea",
        oid::NAME => "name",
        oid::INT8 => "int8",
        oid::INT2 => "int2",
        oid::INT4 => "int4",
        oid::TEXT => "text",
        oid::JSON => "json",
        oid::FLOAT4 => "float4",
        oid::FLOAT8 => "float8",
        oid::UNKNOWN => "unknown",
        oid::BPCHAR => "bpchar",
        oid::VARCHAR => "varchar",
        oid::DATE => "date",
        oid::TIMESTAMP => "timestamp",
        oid::TIMESTAMPTZ => "timestamptz",
        oid::UUID => "uuid",
        oid::JSONB => "jsonb",
        other => return format!("type {other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways_across_the_calendar() {
        assert_eq!(Date::from_ymd(2000, 1, 1), Some(Date(0)));
        assert_eq!(Date::from_ymd(1999, 12, 31), Some(Date(-1)));
        assert_eq!(Date::from_ymd(2024, 2, 29).unwrap().ymd(), (2024, 2, 29));
        assert_eq!(Date::from_ymd(2023, 2, 29), None);
        assert_eq!(Date::from_ymd(2023, 13, 1), None);
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = Date(days).ymd();
            assert_eq!(Date::from_ymd(y, m, d), Some(Date(days)));
        }
        assert_eq!(Date(0).to_string(), "2000-01-01");
    }

    #[test]
    fn timestamps_convert_to_and_from_system_time() {
        assert_eq!(
            Timestamp::from_system_time(UNIX_EPOCH),
            Some(Timestamp(-946_684_800_000_000))
        );
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(
            Timestamp::from_system_time(t).unwrap().to_system_time(),
            Some(t)
        );
        let before = UNIX_EPOCH - Duration::from_micros(5);
        assert_eq!(
            Timestamp::from_system_time(before)
                .unwrap()
                .to_system_time(),
            Some(before)
        );
        assert_eq!(Timestamp(i64::MAX).to_system_time(), None);
    }

    #[test]
    fn uuids_print_and_parse() {
        let u: Uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap();
        assert_eq!(u.to_string(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert!("not-a-uuid".parse::<Uuid>().is_err());
    }

    #[test]
    fn malformed_binary_values_give_errors_not_panics() {
        assert!(i32::from_sql(oid::INT4, &[1, 2]).is_err());
        assert!(i64::from_sql(oid::INT8, &[]).is_err());
        assert!(f64::from_sql(oid::FLOAT8, &[0; 3]).is_err());
        assert!(bool::from_sql(oid::BOOL, &[]).is_err());
        assert!(String::from_sql(oid::TEXT, &[0xff, 0xfe]).is_err());
        assert!(Uuid::from_sql(oid::UUID, &[0; 15]).is_err());
        assert!(Json::<String>::from_sql(oid::JSONB, &[9, b'{', b'}']).is_err());
        assert!(i32::from_null(oid::INT4).is_err());
        assert_eq!(Option::<i32>::from_null(oid::INT4), Ok(None));
    }
}
