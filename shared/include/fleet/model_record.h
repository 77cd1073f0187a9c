/* model_record.h: the record of a model registered in Redis.
 *
 * {prefix}:models (keys.h, docs/redis.md) holds one field per model the fleet serves,
 * whose value is this record, a JSON object:
 *
 *   {"created_ms": 1796546742955, "registered_by": "worker w-1 on gpu-3",
 *    "description": "..."}
 *
 * created_ms is Redis time when it was first registered; registered_by says who wrote it
 * (a worker's start, or "fleetctl"); description is optional. A worker writes its model's
 * record with HSETNX, so the first registration's time and author stay; only `fleetctl
 * model remove` deletes one. Readers (gateways, fleetctl) accept any JSON object and any
 * other value as a record without fields: the field's presence is what registers a model.
 */
#ifndef FLEET_MODEL_RECORD_H
#define FLEET_MODEL_RECORD_H

/* The record's text (compact JSON), malloc'd; NULL when out of memory. description may be
 * NULL or "" (then left out). */
char *fleet_model_record(long long created_ms, const char *registered_by, const char *description);

#endif
