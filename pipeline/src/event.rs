//! Market events, calendar dates, and the close of a New York trading day as a
//! UTC instant.
//!
//! Everything here is pure computation: no clock is read except by
//! [`Timestamp::now`], and no time-zone database is consulted. The one zone the
//! pipeline needs, America/New_York, is computed from the US daylight-saving
//! rules written out in [`ny_is_dst`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds in one second.
const MICROS_PER_SEC: i64 = 1_000_000;
/// Seconds in one day (UTC has no leap seconds in Unix time).
const SECS_PER_DAY: i64 = 86_400;
/// The local hour at which an event of a trading day is stamped: the close.
const CLOSE_HOUR: i64 = 16;
/// New York's offset from UTC in hours, standard time (EST, UTC-5).
const EST_OFFSET_HOURS: i64 = 5;
/// New York's offset from UTC in hours, daylight time (EDT, UTC-4).
const EDT_OFFSET_HOURS: i64 = 4;
/// The first year for which [`ny_is_dst`] knows the rule (the Uniform Time Act
/// took effect in 1967; before it New York kept rules of its own).
pub const FIRST_DST_YEAR: i32 = 1967;
/// The last year a [`Date`] may have (ISO 8601 four-digit years).
pub const LAST_YEAR: i32 = 9999;

/// One market event: a price (and volume) of a symbol at the close of a day.
///
/// `event_id` is stable across runs (see [`crate::source`]), so storing an
/// event twice is idempotent.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Stable, unique id: `<file stem>:<data row>[:<pass>]`.
    pub event_id: String,
    /// Ticker symbol, e.g. `MSFT` or `^GSPC`.
    pub symbol: String,
    /// Closing price.
    pub price: f64,
    /// Traded volume (0 where the source has none).
    pub volume: i64,
    /// The close of the trading day (16:00 New York time) in UTC.
    pub ts: Timestamp,
}

/// An instant as whole microseconds since the Unix epoch, UTC.
///
/// Unlike [`SystemTime`] it is `Copy + Ord`, formats as ISO 8601 and converts
/// to a calendar date without any platform call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The instant `micros` microseconds after the epoch (negative: before).
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    /// The instant `secs` whole seconds after the epoch.
    pub const fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(MICROS_PER_SEC))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded towards the past.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(MICROS_PER_SEC)
    }

    /// The current time of the system clock.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Converts a [`SystemTime`], truncating to whole microseconds and
    /// saturating far outside ±292,000 years.
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(before) => {
                Timestamp(i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m))
            }
        }
    }

    /// The same instant as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }

    /// The UTC calendar date of this instant.
    pub fn utc_date(self) -> Date {
        let days = self.as_secs().div_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Date { year, month, day }
    }

    /// ISO 8601 in UTC: `1999-01-04T21:00:00Z`, with `.ffffff` only when the
    /// instant is not a whole second.
    pub fn to_iso8601(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.as_secs();
        let micros = self.0.rem_euclid(MICROS_PER_SEC);
        let date = self.utc_date();
        let of_day = secs.rem_euclid(SECS_PER_DAY);
        write!(
            f,
            "{date}T{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        f.write_str("Z")
    }
}

impl serde::Serialize for Timestamp {
    /// As its ISO 8601 text, like [`Timestamp::to_iso8601`].
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        Timestamp::from_system_time(t)
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        t.to_system_time()
    }
}

/// Why a date could not be read or placed in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// The text is in none of the accepted layouts.
    #[error("date {0:?} is not M/D/YYYY, YYYY-MM-DD or Mon D YYYY")]
    Format(String),
    /// The parts do not name a day of the calendar (or the year is past 9999).
    #[error("{year:04}-{month:02}-{day:02} is not a calendar date")]
    Invalid {
        /// Year as written.
        year: i32,
        /// Month as written.
        month: u32,
        /// Day as written.
        day: u32,
    },
    /// New York's daylight-saving rule for this year is not known here.
    #[error("no New York daylight-saving rule is known for {0} (only {FIRST_DST_YEAR} onwards)")]
    NoDstRule(i32),
}

/// A day of the proleptic Gregorian calendar, years 1 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u32,
    day: u32,
}

impl Date {
    /// The date `year-month-day`.
    ///
    /// # Errors
    ///
    /// [`DateError::Invalid`] if the month or day is out of range for that
    /// year, or the year is outside 1..=9999.
    pub fn new(year: i32, month: u32, day: u32) -> Result<Date, DateError> {
        let valid = (1..=LAST_YEAR).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        if valid {
            Ok(Date { year, month, day })
        } else {
            Err(DateError::Invalid { year, month, day })
        }
    }

    /// Reads `M/D/YYYY` (`1/4/1999`, `01/04/1999`), `YYYY-MM-DD`, or
    /// `Mon D YYYY` (`Jan 1 2000`, also `Jan 1, 2000` and full month names,
    /// in any letter case). Surrounding whitespace is ignored.
    ///
    /// # Errors
    ///
    /// [`DateError::Format`] for any other text, [`DateError::Invalid`] for a
    /// well-formed but impossible date such as `2/30/2001`.
    pub fn parse(text: &str) -> Result<Date, DateError> {
        let s = text.trim();
        let format = || DateError::Format(text.to_owned());
        let (year, month, day) = if s.contains('/') {
            let mut parts = s.split('/');
            let (Some(m), Some(d), Some(y), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format());
            };
            (
                digits(y, 4, 4).ok_or_else(format)?,
                digits(m, 1, 2).ok_or_else(format)?,
                digits(d, 1, 2).ok_or_else(format)?,
            )
        } else if s.contains('-') {
            let mut parts = s.split('-');
            let (Some(y), Some(m), Some(d), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format());
            };
            (
                digits(y, 4, 4).ok_or_else(format)?,
                digits(m, 1, 2).ok_or_else(format)?,
                digits(d, 1, 2).ok_or_else(format)?,
            )
        } else {
            let mut parts = s.split_whitespace();
            let (Some(m), Some(d), Some(y), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format());
            };
            let d = d.strip_suffix(',').unwrap_or(d);
            (
                digits(y, 4, 4).ok_or_else(format)?,
                month_from_name(m).ok_or_else(format)?,
                digits(d, 1, 2).ok_or_else(format)?,
            )
        };
        // `digits` caps the year at four digits, so it fits an i32.
        Date::new(i32::try_from(year).map_err(|_| format())?, month, day)
    }

    /// The year.
    pub const fn year(self) -> i32 {
        self.year
    }

    /// The month, 1 to 12.
    pub const fn month(self) -> u32 {
        self.month
    }

    /// The day of the month, 1 to 31.
    pub const fn day(self) -> u32 {
        self.day
    }

    /// Days since 1970-01-01 (negative before it).
    pub fn days_since_epoch(self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    /// Day of the week, 0 = Sunday .. 6 = Saturday.
    pub fn weekday(self) -> u32 {
        weekday_of(self.days_since_epoch())
    }

    /// `YYYYMMDD`, as in the audit file names.
    pub fn compact(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// The instant of 16:00 New York time on this date, the close of the
    /// trading day: 21:00 UTC under standard time (EST, UTC-5), 20:00 UTC
    /// under daylight time (EDT, UTC-4).
    ///
    /// # Errors
    ///
    /// [`DateError::NoDstRule`] before [`FIRST_DST_YEAR`].
    ///
    /// # Examples
    ///
    /// ```
    /// use tally_pipeline::event::Date;
    ///
    /// let winter = Date::parse("1/4/1999").unwrap().ny_close().unwrap();
    /// assert_eq!(winter.to_string(), "1999-01-04T21:00:00Z");
    /// let summer = Date::parse("Jul 2 2018").unwrap().ny_close().unwrap();
    /// assert_eq!(summer.to_string(), "2018-07-02T20:00:00Z");
    /// ```
    pub fn ny_close(self) -> Result<Timestamp, DateError> {
        let offset = if ny_is_dst(self)? {
            EDT_OFFSET_HOURS
        } else {
            EST_OFFSET_HOURS
        };
        let secs = self.days_since_epoch() * SECS_PER_DAY + (CLOSE_HOUR + offset) * 3600;
        Ok(Timestamp::from_secs(secs))
    }
}

impl fmt::Display for Date {
    /// `YYYY-MM-DD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Whether New York keeps daylight time at 16:00 local on `date`.
///
/// The switches happen at 02:00 local, so at 16:00 the day of the spring
/// switch is already daylight time and the day of the autumn switch is
/// already standard time. The US rules:
///
/// - 2007 onwards (Energy Policy Act of 2005): second Sunday of March to first
///   Sunday of November;
/// - 1987 to 2006: first Sunday of April to last Sunday of October;
/// - 1967 to 1986: last Sunday of April to last Sunday of October, except the
///   energy-crisis years 1974 (from 6 January) and 1975 (from 23 February).
///
/// # Errors
///
/// [`DateError::NoDstRule`] before 1967.
pub fn ny_is_dst(date: Date) -> Result<bool, DateError> {
    let year = date.year;
    let (start, end) = match year {
        2007.. => (nth_sunday(year, 3, 2), nth_sunday(year, 11, 1)),
        1987..=2006 => (nth_sunday(year, 4, 1), last_sunday(year, 10)),
        1974 => (days_from_civil(1974, 1, 6), last_sunday(year, 10)),
        1975 => (days_from_civil(1975, 2, 23), last_sunday(year, 10)),
        FIRST_DST_YEAR..=1986 => (last_sunday(year, 4), last_sunday(year, 10)),
        _ => return Err(DateError::NoDstRule(year)),
    };
    let day = date.days_since_epoch();
    Ok(start <= day && day < end)
}

/// The day (since the epoch) of the `n`th Sunday of `month`.
fn nth_sunday(year: i32, month: u32, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    let to_sunday = (7 - i64::from(weekday_of(first))) % 7;
    first + to_sunday + 7 * (n - 1)
}

/// The day (since the epoch) of the last Sunday of `month`.
fn last_sunday(year: i32, month: u32) -> i64 {
    let last = days_from_civil(year, month, days_in_month(year, month));
    last - i64::from(weekday_of(last))
}

/// 0 = Sunday; 1970-01-01 was a Thursday.
fn weekday_of(days: i64) -> u32 {
    // rem_euclid(7) is in 0..7, so the cast is lossless.
    (days + 4).rem_euclid(7) as u32
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`: years counted from March so the leap day falls last).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Out of i32 range only for instants ~5.8 million years away; saturate.
    let year = i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX });
    // day is in 1..=31 and month in 1..=12 by construction.
    (year, month as u32, day as u32)
}

/// ASCII digits only (no sign, no spaces), `min..=max` of them.
fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month_from_name(name: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let lower = name.to_ascii_lowercase();
    let index = NAMES
        .iter()
        .position(|full| lower == *full || (lower.len() == 3 && full.starts_with(&lower)))?;
    u32::try_from(index + 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(text: &str) -> String {
        Date::parse(text).unwrap().ny_close().unwrap().to_string()
    }

    #[test]
    fn a_winter_close_is_21_utc() {
        let ts = Date::parse("1/4/1999").unwrap().ny_close().unwrap();
        assert_eq!(ts.as_micros(), 915_483_600_000_000);
        assert_eq!(ts.to_string(), "1999-01-04T21:00:00Z");
        assert_eq!(
            ts.to_system_time(),
            UNIX_EPOCH + Duration::from_secs(915_483_600)
        );
    }

    #[test]
    fn a_summer_close_is_20_utc() {
        let ts = Date::parse("7/2/2018").unwrap().ny_close().unwrap();
        assert_eq!(ts.as_secs(), 1_530_561_600);
        assert_eq!(ts.to_string(), "2018-07-02T20:00:00Z");
    }

    #[test]
    fn the_1999_switch_days_follow_the_april_to_october_rule() {
        // 1999: first Sunday of April = 4 April, last Sunday of October = 31 October.
        assert_eq!(close("4/3/1999"), "1999-04-03T21:00:00Z");
        assert_eq!(close("4/4/1999"), "1999-04-04T20:00:00Z");
        assert_eq!(close("4/5/1999"), "1999-04-05T20:00:00Z");
        assert_eq!(close("10/30/1999"), "1999-10-30T20:00:00Z");
        assert_eq!(close("10/31/1999"), "1999-10-31T21:00:00Z");
        assert_eq!(close("11/1/1999"), "1999-11-01T21:00:00Z");
    }

    #[test]
    fn the_2010_switch_days_follow_the_march_to_november_rule() {
        // 2010: second Sunday of March = 14 March, first Sunday of November = 7 November.
        assert_eq!(close("Mar 13 2010"), "2010-03-13T21:00:00Z");
        assert_eq!(close("Mar 14 2010"), "2010-03-14T20:00:00Z");
        assert_eq!(close("Nov 6 2010"), "2010-11-06T20:00:00Z");
        assert_eq!(close("Nov 7 2010"), "2010-11-07T21:00:00Z");
    }

    #[test]
    fn the_rule_changed_between_2006_and_2007() {
        // 2006 kept April (2 April); 2007 moved to 11 March and 4 November.
        assert_eq!(close("3/13/2006"), "2006-03-13T21:00:00Z");
        assert_eq!(close("4/1/2006"), "2006-04-01T21:00:00Z");
        assert_eq!(close("4/2/2006"), "2006-04-02T20:00:00Z");
        assert_eq!(close("10/29/2006"), "2006-10-29T21:00:00Z");
        assert_eq!(close("3/10/2007"), "2007-03-10T21:00:00Z");
        assert_eq!(close("3/11/2007"), "2007-03-11T20:00:00Z");
        assert_eq!(close("11/3/2007"), "2007-11-03T20:00:00Z");
        assert_eq!(close("11/4/2007"), "2007-11-04T21:00:00Z");
    }

    #[test]
    fn older_years_use_the_uniform_time_act_rules() {
        // 1986: last Sunday of April = 27 April; 1974 began on 6 January.
        assert_eq!(close("4/26/1986"), "1986-04-26T21:00:00Z");
        assert_eq!(close("4/27/1986"), "1986-04-27T20:00:00Z");
        assert_eq!(close("1/5/1974"), "1974-01-05T21:00:00Z");
        assert_eq!(close("1/6/1974"), "1974-01-06T20:00:00Z");
        assert_eq!(
            Date::parse("1/4/1966").unwrap().ny_close(),
            Err(DateError::NoDstRule(1966))
        );
    }

    #[test]
    fn all_three_layouts_parse() {
        let d = Date::new(2000, 1, 1).unwrap();
        assert_eq!(Date::parse("1/1/2000"), Ok(d));
        assert_eq!(Date::parse("01/01/2000"), Ok(d));
        assert_eq!(Date::parse("2000-01-01"), Ok(d));
        assert_eq!(Date::parse("Jan 1 2000"), Ok(d));
        assert_eq!(Date::parse(" jan 1, 2000 "), Ok(d));
        assert_eq!(Date::parse("January 01 2000"), Ok(d));
        assert_eq!(
            Date::parse("Feb 29 2000").unwrap().to_string(),
            "2000-02-29"
        );
    }

    #[test]
    fn bad_dates_are_errors_not_panics() {
        for bad in [
            "",
            "1/4",
            "1/4/99",
            "+1/4/1999",
            "1/4/1999/2",
            "13/1/1999x",
            "Foo 1 2000",
            "Ja 1 2000",
            "Jan  2000",
            "2000-1",
            "x/y/zzzz",
            "1 / 4 / 1999",
            "99999999999/1/1999",
        ] {
            assert_eq!(
                Date::parse(bad),
                Err(DateError::Format(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            Date::parse("2/29/2001"),
            Err(DateError::Invalid {
                year: 2001,
                month: 2,
                day: 29
            })
        );
        assert!(Date::parse("13/1/1999").is_err());
        assert!(Date::parse("0/1/1999").is_err());
        assert!(Date::parse("1/0/1999").is_err());
        assert!(Date::parse("1/1/0000").is_err());
    }

    #[test]
    fn dates_round_trip_through_days() {
        for days in [-719_468_i64, -1, 0, 1, 10_957, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(Date::new(1970, 1, 1).unwrap().weekday(), 4);
        assert_eq!(Date::new(2000, 1, 1).unwrap().weekday(), 6);
        assert_eq!(Date::new(1999, 1, 4).unwrap().compact(), "19990104");
    }

    #[test]
    fn timestamps_format_as_utc_iso_8601() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_micros(1_500_000).to_string(),
            "1970-01-01T00:00:01.500000Z"
        );
        assert_eq!(Timestamp::from_secs(-1).to_string(), "1969-12-31T23:59:59Z");
        assert_eq!(
            Timestamp::from_secs(-1).utc_date(),
            Date::new(1969, 12, 31).unwrap()
        );
        let t = Timestamp::from_micros(-1_500_000);
        assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
    }
}
