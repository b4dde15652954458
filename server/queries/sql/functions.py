"""The functions a caller's SQL may call: an explicit allowlist (aggregates, date, string, JSON, array,
conditional, math, type conversion); anything else (sleep, file, url, dictGet, getSetting, …) is refused."""

from __future__ import annotations

import re
from collections.abc import Container

from sqlglot import exp

from server.queries.sql.dialect import InsightSQL, render
from server.queries.sql.problems import invalid

_AGGREGATES = """
count sum avg min max any anyLast anyHeavy argMin argMax uniq uniqExact uniqCombined uniqCombined64 uniqHLL12
uniqTheta groupArray groupUniqArray groupArraySample groupArrayMovingSum groupArrayMovingAvg groupBitAnd groupBitOr
groupBitXor median medianExact quantile quantiles quantileExact quantilesExact quantileTDigest quantilesTDigest
quantileTiming stddevPop stddevSamp varPop varSamp covarPop covarSamp corr topK topKWeighted sumMap minMap maxMap
avgWeighted simpleLinearRegression entropy skewPop skewSamp kurtPop kurtSamp sumWithOverflow histogram
windowFunnel retention sequenceMatch sequenceCount countDistinct approx_distinct stddev variance
count_if sum_if avg_if array_agg
"""
# Suffixes that turn an aggregate into another one (sumIf, uniqArray, avgOrNull, …).
_COMBINATORS = ("If", "Array", "OrNull", "OrDefault", "Distinct", "ArrayIf", "IfOrNull", "ForEach", "Merge", "State")
_WINDOW = """
row_number rank dense_rank percent_rank cume_dist ntile lag lead lagInFrame leadInFrame first_value last_value
nth_value
"""
_DATE = """
now now64 today yesterday toDate toDate32 toDateTime toDateTime64 toDateOrNull toDateTimeOrNull toDate32OrNull
toDateTime64OrNull toDateOrZero toDateTimeOrZero toTimeZone toTimezone timeZone toYear toQuarter toMonth toWeek
toISOWeek toISOYear toDayOfYear toDayOfMonth toDayOfWeek toHour toMinute toSecond toUnixTimestamp
toUnixTimestamp64Milli toUnixTimestamp64Micro fromUnixTimestamp fromUnixTimestamp64Milli
fromUnixTimestamp64Micro toStartOfYear toStartOfQuarter toStartOfMonth toStartOfWeek toMonday toStartOfDay
toStartOfHour toStartOfMinute toStartOfSecond toStartOfFiveMinutes toStartOfTenMinutes toStartOfFifteenMinutes
toStartOfInterval toYYYYMM toYYYYMMDD toYYYYMMDDhhmmss toRelativeDayNum toRelativeWeekNum toRelativeMonthNum
toRelativeHourNum dateDiff date_diff dateAdd date_add dateSub date_sub addSeconds addMinutes addHours addDays
addWeeks addMonths addQuarters addYears subtractSeconds subtractMinutes subtractHours subtractDays subtractWeeks
subtractMonths subtractQuarters subtractYears timestamp_add timestamp_sub dateTrunc date_trunc date_format
formatDateTime parseDateTimeBestEffort parseDateTimeBestEffortOrNull parseDateTime64BestEffort
parseDateTime64BestEffortOrNull parseDateTimeBestEffortOrZero toIntervalSecond toIntervalMinute toIntervalHour
toIntervalDay toIntervalWeek toIntervalMonth toIntervalQuarter toIntervalYear makeDate makeDateTime
str_to_date strftime date datetime toLastDayOfMonth age
"""
_STRING = """
length lengthUTF8 char_length empty notEmpty lower upper lowerUTF8 upperUTF8 reverse concat concatWithSeparator
substring substr substringUTF8 left right leftUTF8 rightUTF8 trim trimLeft trimRight trimBoth ltrim rtrim
leftPad rightPad lpad rpad repeat replace replaceOne replaceAll replaceRegexpOne replaceRegexpAll position
positionCaseInsensitive positionUTF8 locate strpos startsWith endsWith like notLike ilike notILike match
multiMatchAny extract extractAll extractAllGroups splitByChar splitByString splitByRegexp arrayStringConcat
format base64Encode base64Decode tryBase64Decode hex unhex lowerUTF8 domain domainWithoutWWW topLevelDomain
protocol path pathFull queryString fragment extractURLParameter extractURLParameters cutQueryString
cutURLParameter decodeURLComponent encodeURLComponent URLHierarchy URLPathHierarchy netloc cutWWW
firstSignificantSubdomain toValidUTF8 normalizeUTF8NFC initcap initcapUTF8 levenshteinDistance editDistance
ngramDistance countSubstrings countMatches regexp_extract regexp_replace regexp_like split_part
string_to_array concat_ws md5 cityHash64 sipHash64 xxHash64 murmurHash3_64 farmFingerprint64 halfMD5
SHA256 SHA1 lcase ucase
"""
_JSON = """
JSONExtract JSONExtractString JSONExtractInt JSONExtractUInt JSONExtractFloat JSONExtractBool JSONExtractRaw
JSONExtractArrayRaw JSONExtractKeys JSONExtractKeysAndValues JSONExtractKeysAndValuesRaw JSONHas JSONLength
JSONType isValidJSON simpleJSONExtractString simpleJSONExtractInt simpleJSONExtractFloat simpleJSONExtractRaw
simpleJSONHas JSON_VALUE JSON_QUERY JSON_EXISTS toJSONString json_extract_scalar json_extract
"""
_ARRAY = """
array range has hasAll hasAny hasSubstr indexOf countEqual arrayElement arrayConcat arrayCount arrayExists
arrayAll arrayFilter arrayMap arrayFirst arrayLast arrayFirstIndex arraySum arrayAvg arrayMin arrayMax
arrayProduct arraySort arrayReverseSort arrayReverse arrayDistinct arrayUniq arrayEnumerate arrayEnumerateUniq
arraySlice arrayPushBack arrayPushFront arrayPopBack arrayPopFront arrayZip arrayFlatten flatten arrayCompact
arrayIntersect arrayReduce arrayCumSum arrayDifference arrayJoin arrayResize arrayFill arraySplit arrayShuffle
emptyArrayString emptyArrayUInt8 emptyArrayInt64 emptyArrayFloat64 tuple tupleElement untuple map mapKeys
mapValues mapContains arrayStringConcat array_contains array_size array_length array_position
"""
_CONDITIONAL = """
if multiIf ifNull nullIf coalesce isNull isNotNull assumeNotNull toNullable isFinite isInfinite isNaN ifNotFinite
greatest least case in notIn equals notEquals less greater lessOrEquals greaterOrEquals and or not xor
isZeroOrNull nullif ifnull iif exists
"""
_MATH = """
abs round roundBankers floor ceil ceiling trunc truncate sqrt cbrt exp exp2 exp10 log ln log2 log10 log1p pow
power sign sin cos tan asin acos atan atan2 pi e intDiv intDivOrZero modulo moduloOrZero mod plus minus
multiply divide negate gcd lcm bitAnd bitOr bitXor bitNot bitShiftLeft bitShiftRight rand rand64 randCanonical
round_to roundToExp2 roundDown max2 min2 percentage safe_divide div
"""
_CONVERSION = """
toString toFixedString toInt8 toInt16 toInt32 toInt64 toInt128 toInt256 toUInt8 toUInt16 toUInt32 toUInt64
toFloat32 toFloat64 toDecimal32 toDecimal64 toDecimal128 toInt8OrNull toInt16OrNull toInt32OrNull toInt64OrNull
toUInt8OrNull toUInt16OrNull toUInt32OrNull toUInt64OrNull toFloat32OrNull toFloat64OrNull toDecimal64OrNull
toInt64OrZero toUInt64OrZero toFloat64OrZero toInt32OrZero toFloat toFloatOrNull toFloatOrZero toInt toIntOrNull
toIntOrZero toBool toUUID toUUIDOrNull toUUIDOrZero toTypeName reinterpretAsString cast accurateCast
accurateCastOrNull toLowCardinality toStringCutToZero toDecimalString generateUUIDv4 toIPv4 toIPv6 finalizeAggregation
IPv4NumToString IPv4StringToNum IPv6NumToString
"""

ALLOWED: frozenset[str] = frozenset(
    name.lower()
    for block in (_WINDOW, _DATE, _STRING, _JSON, _ARRAY, _CONDITIONAL, _MATH, _CONVERSION)
    for name in block.split()
) | frozenset(
    (name + suffix).lower() for name in _AGGREGATES.split() for suffix in ("", *_COMBINATORS)
)

# The aggregate functions among them (with their combinators): refused where one value per row is
# asked (an expression of an event, server/queries/sql/expression.py).
AGGREGATES: frozenset[str] = frozenset(
    (name + suffix).lower() for name in _AGGREGATES.split() for suffix in ("", *_COMBINATORS)
)

# A printed call: its name, then its opening parenthesis (parametric aggregates too: quantile(0.5)(x)).
_HEAD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


# The printer's own: which node kinds it prints by a rule of their own, and its fallback's call name.
_PRINTER = InsightSQL().generator(identify=True, comments=False)
_OWN_RULE: Container[type[exp.Expr]] | None = getattr(_PRINTER, "_dispatch", None)


def function_name(node: exp.Func) -> str | None:
    """The name the engine will see for a call: the caller's name for a function sqlglot does not
    know, else the name sqlglot prints (what reaches the engine); None for syntax that prints no
    call (CASE, operators)."""
    if isinstance(node, exp.Anonymous):
        return str(node.name)
    if isinstance(node, exp.AnonymousAggFunc):
        return str(node.name)
    if _OWN_RULE is not None and type(node) not in _OWN_RULE:
        # A function the printer has no rule for is printed by its fallback, as this name then the
        # arguments: the name is known without printing the arguments (printing every call with its
        # arguments, nested calls again inside each, was most of the compile time).
        return str(_PRINTER.normalize_func(_PRINTER.function_name(node)))
    found = _HEAD.match(render(node))
    return found.group(1) if found else None


def check_functions(tree: exp.Expr) -> None:
    """Refuses the first call of a function outside the allowlist, naming it."""
    for node in tree.find_all(exp.Func):
        name = function_name(node)
        if name is not None and name.lower() not in ALLOWED:
            raise invalid(f"function {name}() is not allowed in SQL insights")
