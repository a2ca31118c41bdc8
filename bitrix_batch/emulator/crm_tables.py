"""The declarative tables: every CRM entity's standard fields, as portals describe them.

Field lists follow real answers: ``crm.lead.fields`` and ``crm.lead.get`` captured from a live
portal (55 standard fields; 49 printed by ``get``, which leaves out CONTACT_IDS and the five
multi-fields unless they hold values), and the REST docs' ``crm.deal.fields`` (45),
``crm.contact.fields`` and ``crm.company.fields`` examples. A new entity is a new table here.
Titles are English; portals print them in the portal's language.
"""

from __future__ import annotations

from .entities import Entity, Stamps, parse_fields

__all__ = [
    "ACTIVITY",
    "COMPANY",
    "CONTACT",
    "DEAL",
    "ENTITIES",
    "ENTITY_BY_TYPE_ID",
    "LEAD",
    "QUOTE",
]

_LEAD = """
ID integer O ID
TITLE string R Lead name
HONORIFIC crm_status:HONORIFIC - Salutation
NAME string - First name
SECOND_NAME string - Middle name
LAST_NAME string - Last name
BIRTHDATE date - Date of birth
COMPANY_TITLE string - Company name
SOURCE_ID crm_status:SOURCE - Source
SOURCE_DESCRIPTION string - Source information
STATUS_ID crm_status:STATUS - Stage
STATUS_DESCRIPTION string - Stage information
STATUS_SEMANTIC_ID string O Status semantics
POST string - Position
ADDRESS string - Address
ADDRESS_2 string - Address (line 2)
ADDRESS_CITY string - City
ADDRESS_POSTAL_CODE string - Zip
ADDRESS_REGION string - Region
ADDRESS_PROVINCE string - State / Province
ADDRESS_COUNTRY string - Country
ADDRESS_COUNTRY_CODE string - Country code
ADDRESS_LOC_ADDR_ID integer - Location address ID
CURRENCY_ID crm_currency - Currency
OPPORTUNITY double - Total
IS_MANUAL_OPPORTUNITY char - IS_MANUAL_OPPORTUNITY
OPENED char - Available to everyone
COMMENTS string - Comment
HAS_PHONE char O Has phone
HAS_EMAIL char O Has email
HAS_IMOL char O Has Open Channel
ASSIGNED_BY_ID user - Responsible person
CREATED_BY_ID user O Created by
MODIFY_BY_ID user O Modified by
MOVED_BY_ID user O Moved by
DATE_CREATE datetime O Created on
DATE_MODIFY datetime O Modified on
MOVED_TIME datetime O Moved on
COMPANY_ID crm_company>4 - Company
CONTACT_ID crm_contact X Contact
CONTACT_IDS crm_contact MV Contacts
IS_RETURN_CUSTOMER char O Repeat lead
DATE_CLOSED datetime O Closed on
ORIGINATOR_ID string - External source
ORIGIN_ID string - Item ID in data source
UTM_SOURCE string - Ad system
UTM_MEDIUM string - Medium
UTM_CAMPAIGN string - Ad campaign UTM
UTM_CONTENT string - Campaign contents
UTM_TERM string - Campaign search term
PHONE crm_multifield M Phone
EMAIL crm_multifield M E-mail
WEB crm_multifield M Website
IM crm_multifield M Messenger
LINK crm_multifield M LINK
"""
#: The key order of a real ``crm.lead.get``.
_LEAD_RECORD = [
    "ID",
    "TITLE",
    "HONORIFIC",
    "NAME",
    "SECOND_NAME",
    "LAST_NAME",
    "COMPANY_TITLE",
    "COMPANY_ID",
    "CONTACT_ID",
    "IS_RETURN_CUSTOMER",
    "BIRTHDATE",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "STATUS_ID",
    "STATUS_DESCRIPTION",
    "POST",
    "COMMENTS",
    "CURRENCY_ID",
    "OPPORTUNITY",
    "IS_MANUAL_OPPORTUNITY",
    "HAS_PHONE",
    "HAS_EMAIL",
    "HAS_IMOL",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "DATE_CLOSED",
    "STATUS_SEMANTIC_ID",
    "OPENED",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
    "MOVED_BY_ID",
    "MOVED_TIME",
    "ADDRESS",
    "ADDRESS_2",
    "ADDRESS_CITY",
    "ADDRESS_POSTAL_CODE",
    "ADDRESS_REGION",
    "ADDRESS_PROVINCE",
    "ADDRESS_COUNTRY",
    "ADDRESS_COUNTRY_CODE",
    "ADDRESS_LOC_ADDR_ID",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "PHONE",
    "EMAIL",
    "WEB",
    "IM",
    "LINK",
]

_CONTACT = """
ID integer O ID
HONORIFIC crm_status:HONORIFIC - Salutation
NAME string - First name
SECOND_NAME string - Middle name
LAST_NAME string - Last name
PHOTO file - Photo
BIRTHDATE date - Date of birth
TYPE_ID crm_status:CONTACT_TYPE - Contact type
SOURCE_ID crm_status:SOURCE - Source
SOURCE_DESCRIPTION string - Source information
POST string - Position
ADDRESS string - Address
ADDRESS_2 string - Address (line 2)
ADDRESS_CITY string - City
ADDRESS_POSTAL_CODE string - Zip
ADDRESS_REGION string - Region
ADDRESS_PROVINCE string - State / Province
ADDRESS_COUNTRY string - Country
ADDRESS_COUNTRY_CODE string - Country code
ADDRESS_LOC_ADDR_ID integer - Location address ID
COMMENTS string - Comment
OPENED char - Available to everyone
EXPORT char - Included in export
HAS_PHONE char O Has phone
HAS_EMAIL char O Has email
HAS_IMOL char O Has Open Channel
ASSIGNED_BY_ID user - Responsible person
CREATED_BY_ID user O Created by
MODIFY_BY_ID user O Modified by
DATE_CREATE datetime O Created on
DATE_MODIFY datetime O Modified on
COMPANY_ID crm_company X Company
COMPANY_IDS crm_company MV COMPANY_IDS
LEAD_ID crm_lead>1 O Lead
ORIGINATOR_ID string - External source
ORIGIN_ID string - Item ID in data source
ORIGIN_VERSION string - Original version
UTM_SOURCE string - Ad system
UTM_MEDIUM string - Medium
UTM_CAMPAIGN string - Ad campaign UTM
UTM_CONTENT string - Campaign contents
UTM_TERM string - Campaign search term
LAST_ACTIVITY_TIME datetime O Last activity
LAST_ACTIVITY_BY user O Last activity by
PHONE crm_multifield M Phone
EMAIL crm_multifield M E-mail
WEB crm_multifield M Website
IM crm_multifield M Messenger
LINK crm_multifield M LINK
"""

_COMPANY = """
ID integer O ID
TITLE string R Company name
COMPANY_TYPE crm_status:COMPANY_TYPE - Company type
LOGO file - Logo
ADDRESS string - Address
ADDRESS_2 string - Address (line 2)
ADDRESS_CITY string - City
ADDRESS_POSTAL_CODE string - Zip
ADDRESS_REGION string - Region
ADDRESS_PROVINCE string - State / Province
ADDRESS_COUNTRY string - Country
ADDRESS_COUNTRY_CODE string - Country code
ADDRESS_LOC_ADDR_ID integer - Location address ID
ADDRESS_LEGAL string - Legal address
REG_ADDRESS string - Legal address
REG_ADDRESS_2 string - Legal address (line 2)
REG_ADDRESS_CITY string - Legal address city
REG_ADDRESS_POSTAL_CODE string - Legal address zip
REG_ADDRESS_REGION string - Legal address region
REG_ADDRESS_PROVINCE string - Legal address state / province
REG_ADDRESS_COUNTRY string - Legal address country
REG_ADDRESS_COUNTRY_CODE string - Legal address country code
REG_ADDRESS_LOC_ADDR_ID integer - Legal address location ID
BANKING_DETAILS string - Payment details
INDUSTRY crm_status:INDUSTRY - Industry
EMPLOYEES crm_status:EMPLOYEES - Employees
CURRENCY_ID crm_currency - Currency
REVENUE double - Annual revenue
OPENED char - Available to everyone
COMMENTS string - Comment
HAS_PHONE char O Has phone
HAS_EMAIL char O Has email
HAS_IMOL char O Has Open Channel
IS_MY_COMPANY char - My company
ASSIGNED_BY_ID user - Responsible person
CREATED_BY_ID user O Created by
MODIFY_BY_ID user O Modified by
DATE_CREATE datetime O Created on
DATE_MODIFY datetime O Modified on
CONTACT_ID crm_contact MV Contact
LEAD_ID crm_lead>1 O Lead
ORIGINATOR_ID string - External source
ORIGIN_ID string - Item ID in data source
ORIGIN_VERSION string - Original version
UTM_SOURCE string - Ad system
UTM_MEDIUM string - Medium
UTM_CAMPAIGN string - Ad campaign UTM
UTM_CONTENT string - Campaign contents
UTM_TERM string - Campaign search term
LAST_ACTIVITY_TIME datetime - Last activity
LAST_ACTIVITY_BY user - Last activity by
LAST_COMMUNICATION_TIME string O Last communication
PHONE crm_multifield M Phone
EMAIL crm_multifield M E-mail
WEB crm_multifield M Website
IM crm_multifield M Messenger
LINK crm_multifield M LINK
"""

_DEAL = """
ID integer O ID
TITLE string - Name
TYPE_ID crm_status:DEAL_TYPE - Type
CATEGORY_ID crm_category I Pipeline
STAGE_ID crm_status:DEAL_STAGE - Stage
STAGE_SEMANTIC_ID string O Stage group
IS_NEW char O New deal
IS_RECURRING char - Recurring deal
IS_RETURN_CUSTOMER char - Repeat deal
IS_REPEATED_APPROACH char - Repeat inquiry
PROBABILITY integer - Probability
CURRENCY_ID crm_currency - Currency
OPPORTUNITY double - Amount
IS_MANUAL_OPPORTUNITY char - IS_MANUAL_OPPORTUNITY
TAX_VALUE double - Tax rate
COMPANY_ID crm_company>4 - Company
CONTACT_ID crm_contact X Contact
CONTACT_IDS crm_contact MV Contacts
QUOTE_ID crm_quote>7 O Quote
BEGINDATE date - Start date
CLOSEDATE date - End date
OPENED char - Available to everyone
CLOSED char - Closed
COMMENTS string - Comment
ASSIGNED_BY_ID user - Responsible person
CREATED_BY_ID user O Created by
MODIFY_BY_ID user O Modified by
MOVED_BY_ID user O MOVED_BY_ID
DATE_CREATE datetime O Created on
DATE_MODIFY datetime O Modified on
MOVED_TIME datetime O MOVED_TIME
SOURCE_ID crm_status:SOURCE - Source
SOURCE_DESCRIPTION string - Source information
LEAD_ID crm_lead>1 O Lead
ADDITIONAL_INFO string - Additional information
LOCATION_ID location - Location
ORIGINATOR_ID string - External source
ORIGIN_ID string - Item ID in data source
UTM_SOURCE string - Ad system
UTM_MEDIUM string - Medium
UTM_CAMPAIGN string - Ad campaign UTM
UTM_CONTENT string - Campaign contents
UTM_TERM string - Campaign search term
LAST_ACTIVITY_TIME datetime O LAST_ACTIVITY_TIME
LAST_ACTIVITY_BY user O LAST_ACTIVITY_BY
"""

#: ``crm.quote.fields`` as the REST docs list it.
_QUOTE = """
ID integer O ID
QUOTE_NUMBER string O Quote number
TITLE string R Subject
STATUS_ID crm_status:QUOTE_STATUS - Stage
CURRENCY_ID crm_currency - Currency
OPPORTUNITY double - Amount
TAX_VALUE double - Tax rate
COMPANY_ID crm_company - Company
MYCOMPANY_ID crm_company - Your company details
CONTACT_ID crm_contact X Contact
CONTACT_IDS crm_contact MV CONTACT_IDS
BEGINDATE date - Issue date
CLOSEDATE date - Deadline
ACTUAL_DATE date - ACTUAL_DATE
OPENED char - Available to everyone
CLOSED char - Closed
COMMENTS string - Comment
CONTENT string - Content
TERMS string - Terms
CLIENT_TITLE string - Client
CLIENT_ADDR string - Address
CLIENT_CONTACT string - Contact person
CLIENT_EMAIL string - E-mail
CLIENT_PHONE string - Phone
CLIENT_TP_ID string - Tax ID
CLIENT_TPA_ID string - KPP
ASSIGNED_BY_ID user - Responsible person
CREATED_BY_ID user O Created by
MODIFY_BY_ID user O Modified by
DATE_CREATE datetime O Created on
DATE_MODIFY datetime O Modified on
LEAD_ID crm_lead - Lead
DEAL_ID crm_deal - Deal
PERSON_TYPE_ID integer - Client type
LOCATION_ID location - Location
UTM_SOURCE string - Ad system
UTM_MEDIUM string - Medium
UTM_CAMPAIGN string - Ad campaign UTM
UTM_CONTENT string - Campaign contents
UTM_TERM string - Campaign search term
LAST_ACTIVITY_TIME datetime O LAST_ACTIVITY_TIME
LAST_ACTIVITY_BY user O LAST_ACTIVITY_BY
LAST_COMMUNICATION_TIME string O LAST_COMMUNICATION_TIME
"""

#: ``crm.activity.fields`` as the REST docs list it.
_ACTIVITY = """
ID integer O ID
OWNER_ID integer I Owner ID
OWNER_TYPE_ID crm_enum_ownertype I Owner type
TYPE_ID crm_enum_activitytype RI Type
PROVIDER_ID string - Provider ID
PROVIDER_TYPE_ID string - Provider type
PROVIDER_GROUP_ID string - Connector type
ASSOCIATED_ENTITY_ID integer O Associated entity ID
SUBJECT string R Subject
START_TIME datetime - Start
END_TIME datetime - Deadline
DEADLINE datetime - Execution deadline
COMPLETED char - Completed
STATUS crm_enum_activitystatus - Status
RESPONSIBLE_ID user R Responsible
PRIORITY crm_enum_activitypriority - Priority
NOTIFY_TYPE crm_enum_activitynotifytype - Notification type
NOTIFY_VALUE integer - Notification parameter
DESCRIPTION string - Description
DESCRIPTION_TYPE crm_enum_contenttype - Description type
DIRECTION crm_enum_activitydirection - Direction
LOCATION string - Location
CREATED datetime O Created on
AUTHOR_ID user O Created by
LAST_UPDATED datetime O Last updated
EDITOR_ID user O Edited by
SETTINGS object - Settings
ORIGIN_ID string - External code
ORIGINATOR_ID string - External source
RESULT_STATUS integer - RESULT_STATUS
RESULT_STREAM integer - RESULT_STREAM
RESULT_SOURCE_ID string - RESULT_SOURCE_ID
PROVIDER_PARAMS object - Provider parameters
PROVIDER_DATA string - Provider data
RESULT_MARK integer - RESULT_MARK
RESULT_VALUE double - RESULT_VALUE
RESULT_SUM double - RESULT_SUM
RESULT_CURRENCY_ID string - RESULT_CURRENCY_ID
AUTOCOMPLETE_RULE integer - Autocomplete
BINDINGS crm_activity_binding OM Bindings
COMMUNICATIONS crm_activity_communication RM Communications
FILES diskfile M Files
WEBDAV_ELEMENTS diskfile MX Added files
IS_INCOMING_CHANNEL char O IS_INCOMING_CHANNEL
"""

_TIMELINE_COMMENT = """
ID integer O ID
CREATED datetime O Created on
ENTITY_ID integer RI Entity ID
ENTITY_TYPE string RI Entity type
AUTHOR_ID user O Author
COMMENT string R Comment
FILES diskfile M Files
"""

_CRM_DEFAULTS = (("OPENED", "Y"), ("HAS_PHONE", "N"), ("HAS_EMAIL", "N"), ("HAS_IMOL", "N"))

LEAD = Entity(
    "lead",
    1,
    parse_fields(_LEAD),
    (
        ("STATUS_ID", "NEW"),
        ("STATUS_SEMANTIC_ID", "P"),
        ("CURRENCY_ID", "RUB"),
        ("OPPORTUNITY", 0.0),
        ("IS_MANUAL_OPPORTUNITY", "N"),
        ("IS_RETURN_CUSTOMER", "N"),
        *_CRM_DEFAULTS,
    ),
    stage_field="STATUS_ID",
    uf_entity="CRM_LEAD",
    record_order=tuple(_LEAD_RECORD),
)
CONTACT = Entity(
    "contact",
    3,
    parse_fields(_CONTACT),
    (("TYPE_ID", "CLIENT"), ("EXPORT", "Y"), *_CRM_DEFAULTS),
    uf_entity="CRM_CONTACT",
)
COMPANY = Entity(
    "company",
    4,
    parse_fields(_COMPANY),
    (("COMPANY_TYPE", "CUSTOMER"), ("CURRENCY_ID", "RUB"), ("IS_MY_COMPANY", "N"), *_CRM_DEFAULTS),
    uf_entity="CRM_COMPANY",
)
DEAL = Entity(
    "deal",
    2,
    parse_fields(_DEAL),
    (
        ("STAGE_ID", "NEW"),
        ("STAGE_SEMANTIC_ID", "P"),
        ("IS_NEW", "Y"),
        ("CATEGORY_ID", 0),
        ("OPENED", "Y"),
        ("CLOSED", "N"),
        ("IS_RECURRING", "N"),
        ("IS_RETURN_CUSTOMER", "N"),
        ("IS_REPEATED_APPROACH", "N"),
        ("IS_MANUAL_OPPORTUNITY", "N"),
        ("CURRENCY_ID", "RUB"),
        ("OPPORTUNITY", 0.0),
        ("TAX_VALUE", 0.0),
    ),
    stage_field="STAGE_ID",
    uf_entity="CRM_DEAL",
)
QUOTE = Entity(
    "quote",
    7,
    parse_fields(_QUOTE),
    (
        ("STATUS_ID", "DRAFT"),
        ("OPENED", "Y"),
        ("CLOSED", "N"),
        ("CURRENCY_ID", "RUB"),
        ("OPPORTUNITY", 0.0),
        ("TAX_VALUE", 0.0),
    ),
    uf_entity="CRM_QUOTE",
)
ACTIVITY = Entity(
    "activity",
    None,
    parse_fields(_ACTIVITY),
    (("COMPLETED", "N"), ("STATUS", 1), ("PRIORITY", 2), ("DESCRIPTION_TYPE", 1)),
    Stamps("RESPONSIBLE_ID", "AUTHOR_ID", "EDITOR_ID", "CREATED", "LAST_UPDATED"),
)
TIMELINE_COMMENT = Entity(
    "timeline.comment",
    None,
    parse_fields(_TIMELINE_COMMENT),
    (),
    Stamps(None, "AUTHOR_ID", None, "CREATED", None),
    table_name="crm_timeline_comment",
)

ENTITIES: dict[str, Entity] = {
    e.name: e for e in (LEAD, CONTACT, COMPANY, DEAL, QUOTE, ACTIVITY, TIMELINE_COMMENT)
}
ENTITY_BY_TYPE_ID: dict[int, Entity] = {
    e.entity_type_id: e for e in ENTITIES.values() if e.entity_type_id is not None
}

#: Tables of the families that are not entities: DDL body and JSON columns.
EXTRA_TABLES: dict[str, tuple[str, frozenset[str]]] = {
    "crm_userfield": (
        "ID INTEGER PRIMARY KEY AUTOINCREMENT, ENTITY_ID TEXT, FIELD_NAME TEXT, "
        "USER_TYPE_ID TEXT, XML_ID TEXT, SORT INTEGER, MULTIPLE TEXT, MANDATORY TEXT, "
        "SHOW_FILTER TEXT, SHOW_IN_LIST TEXT, EDIT_IN_LIST TEXT, IS_SEARCHABLE TEXT, "
        "SETTINGS TEXT, LIST TEXT, LABELS TEXT",
        frozenset({"SETTINGS", "LIST", "LABELS"}),
    ),
    "crm_relation": (
        "ID INTEGER PRIMARY KEY AUTOINCREMENT, OWNER_TYPE INTEGER, OWNER_ID INTEGER, "
        "ITEM_TYPE INTEGER, ITEM_ID INTEGER, SORT INTEGER, ROLE_ID INTEGER, IS_PRIMARY TEXT",
        frozenset(),
    ),
    "crm_productrow": (
        "ID INTEGER PRIMARY KEY AUTOINCREMENT, OWNER_TYPE TEXT, OWNER_ID INTEGER, "
        "SORT INTEGER, DATA TEXT",
        frozenset({"DATA"}),
    ),
    "crm_status": (
        "ID INTEGER PRIMARY KEY AUTOINCREMENT, ENTITY_ID TEXT, STATUS_ID TEXT, NAME TEXT, "
        "NAME_INIT TEXT, SORT INTEGER, SYSTEM TEXT, CATEGORY_ID INTEGER, COLOR TEXT, "
        "SEMANTICS TEXT",
        frozenset(),
    ),
    "crm_category": (
        "ID INTEGER PRIMARY KEY AUTOINCREMENT, ENTITY_TYPE_ID INTEGER, NAME TEXT, "
        "SORT INTEGER, IS_DEFAULT TEXT, ORIGIN_ID TEXT, ORIGINATOR_ID TEXT",
        frozenset(),
    ),
    "crm_activity_type": (
        "ID INTEGER PRIMARY KEY AUTOINCREMENT, TYPE_ID TEXT UNIQUE, NAME TEXT, "
        "IS_CONFIGURABLE_TYPE TEXT",
        frozenset(),
    ),
    "crm_stagehistory": (
        "ID INTEGER PRIMARY KEY AUTOINCREMENT, ENTITY_TYPE_ID INTEGER, TYPE_ID INTEGER, "
        "OWNER_ID INTEGER, CREATED_TIME TEXT, CATEGORY_ID INTEGER, STAGE_SEMANTIC_ID TEXT, "
        "STAGE_ID TEXT",
        frozenset(),
    ),
    "crm_type": (
        "ID INTEGER PRIMARY KEY AUTOINCREMENT, ENTITY_TYPE_ID INTEGER UNIQUE, DATA TEXT",
        frozenset({"DATA"}),
    ),
}
