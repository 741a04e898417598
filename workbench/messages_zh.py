"""marshmallow's validation messages in Chinese: a 422 names the field and says what is wrong in the users' language.

Applied when `workbench` is imported — before any schema class is defined (fields and validators format their
messages when they are built, at class definition), so every schema of every part gets them.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate


def apply() -> None:
    fields.Field.default_error_messages.update({"required": "必填", "null": "不能为空", "validator_failed": "取值无效"})
    fields.String.default_error_messages.update({"invalid": "须为文字", "invalid_utf8": "不是有效的 UTF-8 文字"})
    fields.Integer.default_error_messages.update({"invalid": "须为整数"})
    fields.Number.default_error_messages.update({"invalid": "须为数字", "too_large": "数值过大"})
    fields.Float.default_error_messages.update({"special": "不能是 NaN 或 Infinity"})
    fields.Decimal.default_error_messages.update({"special": "不能是 NaN 或 Infinity"})
    fields.Boolean.default_error_messages.update({"invalid": "须为 true 或 false"})
    fields.DateTime.default_error_messages.update(
        {"invalid": "日期时间格式不正确", "invalid_awareness": "日期时间须带时区", "format": "日期时间格式不正确"}
    )
    fields.Date.default_error_messages.update({"invalid": "日期格式不正确（YYYY-MM-DD）", "format": "日期格式不正确"})
    fields.Mapping.default_error_messages.update({"invalid": "须为对象"})
    fields.List.default_error_messages.update({"invalid": "须为列表"})
    fields.Nested.default_error_messages.update({"type": "须为对象"})
    fields.Email.default_error_messages.update({"invalid": "电子邮箱格式不正确"})
    fields.Url.default_error_messages.update({"invalid": "网址格式不正确"})
    Schema._default_error_messages.update({"type": "输入类型不正确", "unknown": "未知字段"})
    validate.Range.message_min = "须{min_op} {{min}}"
    validate.Range.message_max = "须{max_op} {{max}}"
    validate.Range.message_all = "须{min_op} {{min}} 且{max_op} {{max}}"
    validate.Range.message_gt, validate.Range.message_gte = "大于", "大于或等于"
    validate.Range.message_lt, validate.Range.message_lte = "小于", "小于或等于"
    validate.Length.message_min = "长度不能少于 {min}"
    validate.Length.message_max = "长度不能超过 {max}"
    validate.Length.message_all = "长度须在 {min} 到 {max} 之间"
    validate.Length.message_equal = "长度须为 {equal}"
    validate.OneOf.default_message = "须为以下之一：{choices}"
    validate.Regexp.default_message = "格式不正确"
    validate.Email.default_message = "电子邮箱格式不正确"
