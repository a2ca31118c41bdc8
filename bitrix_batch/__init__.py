"""bitrix_batch: any-length Bitrix24 REST ``batch`` with a DAG scheduler."""
