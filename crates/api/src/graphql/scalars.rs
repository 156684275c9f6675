//! Custom scalars of the contract.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use taxbridge_domain::time::Timestamp;

/// An instant, serialized as an RFC 3339 UTC string with milliseconds: 2024-01-15T10:30:00.000Z
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date(pub Timestamp);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => Timestamp::parse_rfc3339(text).map(Date).ok_or_else(|| {
                InputValueError::custom(format!(
                    "`{text}` is not an RFC 3339 instant such as 2024-01-15T10:30:00.000Z"
                ))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339())
    }
}

impl From<Timestamp> for Date {
    fn from(t: Timestamp) -> Self {
        Self(t)
    }
}
