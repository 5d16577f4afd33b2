"""What schemas/openapi.yaml states in prose but a JSON Schema pattern cannot: the two
users of `single:<a>-<b>` are different users (ferry answers `single:a-a` with 400).
scripts/api-contract.sh loads this into schemathesis, so that no request it generates
as valid names such a conversation; everything else is generated from the document."""

import re

import schemathesis

SELF_CONVERSATION = re.compile(r"^single:([A-Za-z0-9_.@:=]{1,128})-\1$")


def _names_self_conversation(body):
    if not isinstance(body, dict):
        return False
    convs = [body.get("convId")]
    notice = body.get("notice")
    if isinstance(notice, dict):
        convs.append(notice.get("convId"))
    return any(isinstance(c, str) and SELF_CONVERSATION.match(c) for c in convs)


@schemathesis.hook
def filter_body(context, body):
    return not _names_self_conversation(body)


@schemathesis.hook
def filter_case(context, case):
    return not _names_self_conversation(case.body)
