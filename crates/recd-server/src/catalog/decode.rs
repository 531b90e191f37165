//! PostgreSQL's binary format → JSON: each column of a row becomes one key of an object,
//! its value decoded by the column's type as the table in the module doc (`catalog/mod.rs`)
//! says. [`supported`] decides at connect which column types have a JSON form.

use serde_json::{Map, Number, Value};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Kind, Type};

use super::sqlstate::{CatalogError, error_chain};

/// The row as a JSON object, one key per column (`NULL` as `null`).
pub(super) fn row_to_json(row: &Row) -> Result<Map<String, Value>, CatalogError> {
    let mut object = Map::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let cell: Option<Cell> = row.try_get(i).map_err(|e| {
            CatalogError::Internal(format!("column `{}`: {}", column.name(), error_chain(&e)))
        })?;
        object.insert(column.name().to_string(), cell.map_or(Value::Null, |c| c.0));
    }
    Ok(object)
}

type DecodeError = Box<dyn std::error::Error + Sync + Send>;

/// One column value as JSON (`NULL` is `Option::None` around it).
struct Cell(Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        decode(ty, raw).map(Cell)
    }

    fn accepts(ty: &Type) -> bool {
        supported(ty)
    }
}

/// Whether a column of type `ty` has a JSON form (see the module's table).
pub(super) fn supported(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Array(inner) => !matches!(inner.kind(), Kind::Array(_)) && supported(inner),
        Kind::Domain(inner) => supported(inner),
        Kind::Enum(_) => true,
        _ => {
            matches!(
                *ty,
                Type::BOOL
                    | Type::INT2
                    | Type::INT4
                    | Type::INT8
                    | Type::OID
                    | Type::FLOAT4
                    | Type::FLOAT8
                    | Type::NUMERIC
                    | Type::TEXT
                    | Type::VARCHAR
                    | Type::BPCHAR
                    | Type::NAME
                    | Type::UUID
                    | Type::JSON
                    | Type::JSONB
                    | Type::TIMESTAMPTZ
                    | Type::TIMESTAMP
                    | Type::DATE
            ) || ty.name() == "citext"
        }
    }
}

/// Decodes one non-NULL value in PostgreSQL's binary format.
fn decode(ty: &Type, raw: &[u8]) -> Result<Value, DecodeError> {
    match ty.kind() {
        Kind::Array(_) => {
            let cells = Vec::<Option<Cell>>::from_sql(ty, raw)?;
            return Ok(Value::Array(
                cells
                    .into_iter()
                    .map(|c| c.map_or(Value::Null, |c| c.0))
                    .collect(),
            ));
        }
        Kind::Domain(inner) => return decode(inner, raw),
        Kind::Enum(_) => return Ok(Value::String(std::str::from_utf8(raw)?.to_owned())),
        _ => {}
    }
    Ok(match *ty {
        Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
        Type::INT2 => Value::from(i16::from_sql(ty, raw)?),
        Type::INT4 => Value::from(i32::from_sql(ty, raw)?),
        Type::INT8 => Value::from(i64::from_sql(ty, raw)?),
        Type::OID => Value::from(u32::from_sql(ty, raw)?),
        // Through the shortest decimal form, so a float4 0.1 reads 0.1, not 0.10000000149.
        Type::FLOAT4 => float(f32::from_sql(ty, raw)?.to_string().parse()?),
        Type::FLOAT8 => float(f64::from_sql(ty, raw)?),
        Type::NUMERIC => numeric(raw)?,
        Type::UUID => Value::String(uuid::Uuid::from_sql(ty, raw)?.to_string()),
        Type::JSON | Type::JSONB => Value::from_sql(ty, raw)?,
        Type::TIMESTAMPTZ => timestamp(raw, "Z")?,
        Type::TIMESTAMP => timestamp(raw, "")?,
        Type::DATE => date(raw)?,
        // text, varchar, char(n), name, citext: the binary form is the UTF-8 text.
        _ => Value::String(std::str::from_utf8(raw)?.to_owned()),
    })
}

/// A float as a JSON number; NaN and the infinities (which JSON lacks) as PostgreSQL spells them.
fn float(v: f64) -> Value {
    match Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => Value::String("NaN".into()),
        None if v > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn be_u16(raw: &[u8], at: usize) -> Result<u16, DecodeError> {
    raw.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated numeric value".into())
}

/// `numeric` (binary: ndigits, weight, sign, dscale, then base-10000 digits) as an f64,
/// parsed from its exact decimal form so that it is correctly rounded.
fn numeric(raw: &[u8]) -> Result<Value, DecodeError> {
    let ndigits = usize::from(be_u16(raw, 0)?);
    let weight = i32::from(be_u16(raw, 2)? as i16);
    let sign = be_u16(raw, 4)?;
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok(Value::String("NaN".into())),
        0xD000 => return Ok(Value::String("Infinity".into())),
        0xF000 => return Ok(Value::String("-Infinity".into())),
        _ => return Err(format!("bad numeric sign {sign:#x}").into()),
    };
    if raw.len() != 8 + 2 * ndigits {
        return Err("numeric value has the wrong length".into());
    }
    if ndigits == 0 {
        return Ok(Value::from(0.0));
    }
    let mut text = String::with_capacity(8 + 4 * ndigits);
    if negative {
        text.push('-');
    }
    text.push_str("0.");
    for i in 0..ndigits {
        let digit = be_u16(raw, 8 + 2 * i)?;
        if digit >= 10_000 {
            return Err("bad numeric digit".into());
        }
        text.push_str(&format!("{digit:04}"));
    }
    text.push_str(&format!("e{}", 4 * (weight + 1)));
    Ok(float(text.parse()?))
}

/// Microseconds (timestamps) and days (dates) count from 2000-01-01.
const PG_EPOCH_DAYS_FROM_UNIX: i64 = 10_957;

fn timestamp(raw: &[u8], zone: &str) -> Result<Value, DecodeError> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| "bad timestamp length")?;
    let us = i64::from_be_bytes(bytes);
    if us == i64::MAX {
        return Ok(Value::String("infinity".into()));
    }
    if us == i64::MIN {
        return Ok(Value::String("-infinity".into()));
    }
    let days = us.div_euclid(86_400_000_000);
    let in_day = us.rem_euclid(86_400_000_000);
    let (secs, micros) = (in_day / 1_000_000, in_day % 1_000_000);
    let mut text = format!(
        "{}T{:02}:{:02}:{:02}",
        civil_date(days + PG_EPOCH_DAYS_FROM_UNIX),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if micros != 0 {
        let fraction = format!(".{micros:06}");
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push_str(zone);
    Ok(Value::String(text))
}

fn date(raw: &[u8]) -> Result<Value, DecodeError> {
    let bytes: [u8; 4] = raw.try_into().map_err(|_| "bad date length")?;
    let days = i32::from_be_bytes(bytes);
    Ok(Value::String(match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => civil_date(i64::from(d) + PG_EPOCH_DAYS_FROM_UNIX),
    }))
}

/// `YYYY-MM-DD` of a day count from 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`). Years outside 0..=9999 get a sign, as ISO 8601's expanded form.
fn civil_date(days_from_unix: i64) -> String {
    let z = days_from_unix + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if (0..=9999).contains(&year) {
        format!("{year:04}-{month:02}-{day:02}")
    } else {
        format!("{year:+}-{month:02}-{day:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_raw(weight: i16, sign: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        raw.extend_from_slice(&weight.to_be_bytes());
        raw.extend_from_slice(&sign.to_be_bytes());
        raw.extend_from_slice(&0u16.to_be_bytes());
        for d in digits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numeric_decodes_to_the_nearest_f64() {
        let cases: &[(i16, u16, &[u16], f64)] = &[
            (1, 0, &[1, 2345, 6780], 12345.678),
            (-1, 0, &[5000], 0.5),
            (-2, 0, &[1000], 0.00001),
            (0, 0x4000, &[3, 2500], -3.25),
            (2, 0, &[1], 100_000_000.0),
            (0, 0, &[], 0.0),
        ];
        for &(weight, sign, digits, want) in cases {
            let got = numeric(&numeric_raw(weight, sign, digits)).expect("valid numeric");
            assert_eq!(got, Value::from(want), "{weight} {sign:#x} {digits:?}");
        }
        assert_eq!(
            numeric(&numeric_raw(0, 0xC000, &[])).expect("NaN"),
            Value::String("NaN".into())
        );
        assert!(numeric(&[0, 1, 0]).is_err(), "truncated");
        assert!(
            numeric(&numeric_raw(0, 0, &[10_000])).is_err(),
            "digit too big"
        );
        assert!(numeric(&numeric_raw(0, 0x1234, &[1])).is_err(), "bad sign");
    }

    #[test]
    fn dates_and_timestamps_format_as_rfc_3339() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(PG_EPOCH_DAYS_FROM_UNIX), "2000-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(19_844), "2024-05-01");
        assert_eq!(civil_date(-1), "1969-12-31");
        assert_eq!(civil_date(2_932_897), "+10000-01-01");
        // 2024-05-01T12:00:00.25Z, in microseconds from 2000-01-01
        let us: i64 = (19_844 - PG_EPOCH_DAYS_FROM_UNIX) * 86_400_000_000 + 43_200_250_000;
        assert_eq!(
            timestamp(&us.to_be_bytes(), "Z").expect("valid"),
            Value::String("2024-05-01T12:00:00.25Z".into())
        );
        assert_eq!(
            timestamp(&(-1i64).to_be_bytes(), "").expect("valid"),
            Value::String("1999-12-31T23:59:59.999999".into())
        );
        assert_eq!(
            timestamp(&i64::MAX.to_be_bytes(), "Z").expect("valid"),
            Value::String("infinity".into())
        );
        assert!(timestamp(&[0, 1], "Z").is_err());
    }

    #[test]
    fn floats_without_json_form_become_strings() {
        assert_eq!(float(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float(f64::NEG_INFINITY), Value::String("-Infinity".into()));
        assert_eq!(float(1.5), Value::from(1.5));
    }
}
