//! How the value newtypes of [`crate::domain::values`] are stored: ids as the `BIGINT`/`INTEGER`
//! they wrap and validated strings as `TEXT`, in both backends, so statements bind and rows
//! decode them directly. A stored string is not checked again as it is read: only values that
//! passed their rule are ever written.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgHasArrayType, PgTypeInfo};
use sqlx::{Database, Decode, Encode, Type};

use crate::domain::values::{
    Avatar, EventSeq, GroupId, GroupName, Nickname, Openid, OrgId, OrgName, RemoteId, TeamId,
    UserId, WebhookId,
};

/// Stores each `$value` as the `$stored` it wraps: bound as a `$bound` (read with `$get`) and
/// decoded with `$from`.
macro_rules! stored_as {
    ($stored:ty, $bound:ty, $get:ident, $from:ident: $($value:ty),*) => {$(
        impl<DB: Database> Type<DB> for $value
        where
            $stored: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <$stored as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <$stored as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $value
        where
            for<'s> $bound: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <_ as Encode<'q, DB>>::encode_by_ref(&self.$get(), buf)
            }

            fn size_hint(&self) -> usize {
                <_ as Encode<'q, DB>>::size_hint(&self.$get())
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $value
        where
            $stored: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                <$stored as Decode<'r, DB>>::decode(value).map(<$value>::$from)
            }
        }

        impl PgHasArrayType for $value {
            fn array_type_info() -> PgTypeInfo {
                <$stored as PgHasArrayType>::array_type_info()
            }
        }
    )*};
}

stored_as!(i64, i64, get, new: TeamId, OrgId, GroupId, UserId, WebhookId, EventSeq);

stored_as!(String, &'s str, as_str, from_stored: GroupName, OrgName, RemoteId, Nickname, Avatar, Openid);
