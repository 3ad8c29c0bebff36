//! The scalar fields a record may carry (name, price, ids, timestamps),
//! declared once: the [`Field`] each entity lists its columns from (see
//! [`super::entity`]) and the wire shape the record reader deserializes
//! them with (see [`super::record`]).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::lenient::{Scalar, lenient_bool};

/// Declares every scalar field a record may carry once: the enum
/// [`Field`] (each entity lists its columns from it, see
/// [`super::entity`]), the fields of the wire record that carry them, and
/// [`WireRecord::scalar`].
macro_rules! record_fields {
    ($($variant:ident: $field:ident),+ $(,)?) => {
        /// A scalar field of a record, copied into the column of the same name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Field {
            $($variant),+
        }

        impl Field {
            /// The field's (and its column's) name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => stringify!($field)),+
                }
            }
        }

        /// The fields of a record the mirror reads; the rest is skipped unread.
        #[derive(Deserialize)]
        pub(super) struct WireRecord<'a> {
            #[serde(default, borrow)]
            pub(super) id: Scalar<'a>,
            $(
                #[serde(default, borrow)]
                $field: Scalar<'a>,
            )+
            #[serde(default, deserialize_with = "lenient_bool")]
            pub(super) is_deleted: Option<bool>,
            #[serde(default, borrow)]
            pub(super) custom_fields_values: Option<&'a RawValue>,
            #[serde(default, borrow, rename = "_embedded")]
            pub(super) embedded: Option<&'a RawValue>,
        }

        impl<'a> WireRecord<'a> {
            /// The value of `field`.
            pub(super) fn scalar(&self, field: Field) -> &Scalar<'a> {
                match field {
                    $(Field::$variant => &self.$field),+
                }
            }
        }
    };
}

record_fields!(
    Name: name,
    FirstName: first_name,
    LastName: last_name,
    Price: price,
    ResponsibleUserId: responsible_user_id,
    GroupId: group_id,
    StatusId: status_id,
    PipelineId: pipeline_id,
    LossReasonId: loss_reason_id,
    SourceId: source_id,
    CreatedBy: created_by,
    UpdatedBy: updated_by,
    Score: score,
    AccountId: account_id,
    LaborCost: labor_cost,
    CreatedAt: created_at,
    UpdatedAt: updated_at,
    ClosedAt: closed_at,
    ClosestTaskAt: closest_task_at,
);

impl Field {
    /// Text columns; every other scalar column holds integers.
    pub fn is_text(self) -> bool {
        matches!(self, Field::Name | Field::FirstName | Field::LastName)
    }
}
