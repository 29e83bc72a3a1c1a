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

macro_rules! stored_as_i64 {
    ($($id:ty),*) => {$(
        impl<DB: Database> Type<DB> for $id
        where
            i64: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <i64 as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <i64 as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $id
        where
            i64: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <i64 as Encode<'q, DB>>::encode_by_ref(&self.get(), buf)
            }

            fn size_hint(&self) -> usize {
                <i64 as Encode<'q, DB>>::size_hint(&self.get())
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $id
        where
            i64: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                <i64 as Decode<'r, DB>>::decode(value).map(<$id>::new)
            }
        }

        impl PgHasArrayType for $id {
            fn array_type_info() -> PgTypeInfo {
                <i64 as PgHasArrayType>::array_type_info()
            }
        }
    )*};
}

stored_as_i64!(TeamId, OrgId, GroupId, UserId, WebhookId, EventSeq);

macro_rules! stored_as_text {
    ($($text:ty),*) => {$(
        impl<DB: Database> Type<DB> for $text
        where
            String: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $text
        where
            for<'s> &'s str: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <&str as Encode<'q, DB>>::encode_by_ref(&self.as_str(), buf)
            }

            fn size_hint(&self) -> usize {
                <&str as Encode<'q, DB>>::size_hint(&self.as_str())
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $text
        where
            String: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                <String as Decode<'r, DB>>::decode(value).map(<$text>::from_stored)
            }
        }

        impl PgHasArrayType for $text {
            fn array_type_info() -> PgTypeInfo {
                <String as PgHasArrayType>::array_type_info()
            }
        }
    )*};
}

stored_as_text!(GroupName, OrgName, RemoteId, Nickname, Avatar, Openid);
