/*  =========================================================================
    abi_layout - the layout of herald.h's public structs, for the bindings

    Prints one line per struct ("STRUCT size N") and per field ("STRUCT
    FIELD offset N"), from the C compiler's own sizeof and offsetof.  The
    Python binding's test (bindings/python/tests/test_abi.py) compares its
    ctypes structures with it, so a field added to a struct in herald.h
    and not to the binding, or in another place, fails a test (a binding
    that copies a struct layout has a test against the header).
    =========================================================================
*/

#include <stddef.h>
#include <stdio.h>
#include "herald.h"

#define S_SIZE(type, name)          printf ("%s size %zu\n", name, sizeof (type))
#define S_FIELD(type, name, field)  printf ("%s %s offset %zu\n", name, #field, \
                                            offsetof (type, field))

int
main (void)
{
    S_SIZE (herald_meta_t, "Meta");
    S_FIELD (herald_meta_t, "Meta", key);
    S_FIELD (herald_meta_t, "Meta", key_len);
    S_FIELD (herald_meta_t, "Meta", value);
    S_FIELD (herald_meta_t, "Meta", value_len);

    S_SIZE (herald_agent_options_t, "Options");
    S_FIELD (herald_agent_options_t, "Options", api);
    S_FIELD (herald_agent_options_t, "Options", fanout);
    S_FIELD (herald_agent_options_t, "Options", state_dir);
    S_FIELD (herald_agent_options_t, "Options", timeout_ms);
    S_FIELD (herald_agent_options_t, "Options", heartbeat_ms);
    S_FIELD (herald_agent_options_t, "Options", dedup_window);
    S_FIELD (herald_agent_options_t, "Options", live_buffer);
    S_FIELD (herald_agent_options_t, "Options", outbox_max_events);
    S_FIELD (herald_agent_options_t, "Options", outbox_max_bytes);
    S_FIELD (herald_agent_options_t, "Options", outbox_fsync);
    S_FIELD (herald_agent_options_t, "Options", sync_interval_ms);
    S_FIELD (herald_agent_options_t, "Options", retry_max_ms);
    S_FIELD (herald_agent_options_t, "Options", sub_rcvhwm);
    S_FIELD (herald_agent_options_t, "Options", on_error);
    S_FIELD (herald_agent_options_t, "Options", on_error_arg);
    S_FIELD (herald_agent_options_t, "Options", dispatch);
    S_FIELD (herald_agent_options_t, "Options", key_file);
    S_FIELD (herald_agent_options_t, "Options", server_key);

    S_SIZE (herald_start_t, "Start");
    S_FIELD (herald_start_t, "Start", kind);
    S_FIELD (herald_start_t, "Start", value);

    S_SIZE (herald_delivery_t, "Delivery");
    S_FIELD (herald_delivery_t, "Delivery", id);
    S_FIELD (herald_delivery_t, "Delivery", topic);
    S_FIELD (herald_delivery_t, "Delivery", topic_len);
    S_FIELD (herald_delivery_t, "Delivery", seq);
    S_FIELD (herald_delivery_t, "Delivery", ver);
    S_FIELD (herald_delivery_t, "Delivery", ts);
    S_FIELD (herald_delivery_t, "Delivery", type);
    S_FIELD (herald_delivery_t, "Delivery", type_len);
    S_FIELD (herald_delivery_t, "Delivery", schema);
    S_FIELD (herald_delivery_t, "Delivery", meta);
    S_FIELD (herald_delivery_t, "Delivery", meta_count);
    S_FIELD (herald_delivery_t, "Delivery", data);
    S_FIELD (herald_delivery_t, "Delivery", data_len);
    S_FIELD (herald_delivery_t, "Delivery", envelope);
    S_FIELD (herald_delivery_t, "Delivery", envelope_len);
    S_FIELD (herald_delivery_t, "Delivery", subscription);
    S_FIELD (herald_delivery_t, "Delivery", redelivered);
    S_FIELD (herald_delivery_t, "Delivery", attempt);

    //  Batch handlers (issue 16)
    S_SIZE (herald_delivery_batch_t, "DeliveryBatch");
    S_FIELD (herald_delivery_batch_t, "DeliveryBatch", size);
    S_FIELD (herald_delivery_batch_t, "DeliveryBatch", subscription);
    S_FIELD (herald_delivery_batch_t, "DeliveryBatch", events);
    S_FIELD (herald_delivery_batch_t, "DeliveryBatch", count);
    S_FIELD (herald_delivery_batch_t, "DeliveryBatch", envelopes);
    S_FIELD (herald_delivery_batch_t, "DeliveryBatch", envelopes_len);
    S_FIELD (herald_delivery_batch_t, "DeliveryBatch", redelivered);
    S_FIELD (herald_delivery_batch_t, "DeliveryBatch", attempt);
    S_FIELD (herald_delivery_batch_t, "DeliveryBatch", handled);
    S_SIZE (herald_sub_status_t, "SubStatus");
    S_FIELD (herald_sub_status_t, "SubStatus", state);
    S_FIELD (herald_sub_status_t, "SubStatus", delivered_seq);
    S_FIELD (herald_sub_status_t, "SubStatus", delivered);
    S_FIELD (herald_sub_status_t, "SubStatus", duplicates);
    S_FIELD (herald_sub_status_t, "SubStatus", retries);
    S_FIELD (herald_sub_status_t, "SubStatus", error);
    S_FIELD (herald_sub_status_t, "SubStatus", message);
    S_FIELD (herald_sub_status_t, "SubStatus", gaps);
    S_FIELD (herald_sub_status_t, "SubStatus", repair_replays);
    S_FIELD (herald_sub_status_t, "SubStatus", live_wait_ms);
    S_FIELD (herald_sub_status_t, "SubStatus", data_lost);
    S_FIELD (herald_sub_status_t, "SubStatus", lineage);

    S_SIZE (herald_group_options_t, "GroupOptions");
    S_FIELD (herald_group_options_t, "GroupOptions", prefixes);
    S_FIELD (herald_group_options_t, "GroupOptions", start);
    S_FIELD (herald_group_options_t, "GroupOptions", partitions);
    S_FIELD (herald_group_options_t, "GroupOptions", session_ms);
    S_FIELD (herald_group_options_t, "GroupOptions", batch_max);

    S_SIZE (herald_group_status_t, "GroupStatus");
    S_FIELD (herald_group_status_t, "GroupStatus", member);
    S_FIELD (herald_group_status_t, "GroupStatus", generation);
    S_FIELD (herald_group_status_t, "GroupStatus", partitions);
    S_FIELD (herald_group_status_t, "GroupStatus", owned);
    S_FIELD (herald_group_status_t, "GroupStatus", committed);
    S_FIELD (herald_group_status_t, "GroupStatus", lag);
    S_FIELD (herald_group_status_t, "GroupStatus", commits);
    S_FIELD (herald_group_status_t, "GroupStatus", redelivered);
    S_FIELD (herald_group_status_t, "GroupStatus", rebalances);
    S_FIELD (herald_group_status_t, "GroupStatus", fenced);
    S_FIELD (herald_group_status_t, "GroupStatus", joined);

    S_SIZE (herald_outgoing_t, "Outgoing");
    S_FIELD (herald_outgoing_t, "Outgoing", topic);
    S_FIELD (herald_outgoing_t, "Outgoing", data);
    S_FIELD (herald_outgoing_t, "Outgoing", data_len);
    S_FIELD (herald_outgoing_t, "Outgoing", type);
    S_FIELD (herald_outgoing_t, "Outgoing", schema);
    S_FIELD (herald_outgoing_t, "Outgoing", meta);
    S_FIELD (herald_outgoing_t, "Outgoing", meta_count);
    S_FIELD (herald_outgoing_t, "Outgoing", has_expect);
    S_FIELD (herald_outgoing_t, "Outgoing", expect);
    S_FIELD (herald_outgoing_t, "Outgoing", id);

    S_SIZE (herald_publish_result_t, "PublishResult");
    S_FIELD (herald_publish_result_t, "PublishResult", id);
    S_FIELD (herald_publish_result_t, "PublishResult", err);
    S_FIELD (herald_publish_result_t, "PublishResult", seq);
    S_FIELD (herald_publish_result_t, "PublishResult", ver);
    S_FIELD (herald_publish_result_t, "PublishResult", dup);
    S_FIELD (herald_publish_result_t, "PublishResult", expected);
    S_FIELD (herald_publish_result_t, "PublishResult", actual);
    S_FIELD (herald_publish_result_t, "PublishResult", message);

    S_SIZE (herald_range_t, "Range");
    printf ("Range from_ offset %zu\n", offsetof (herald_range_t, from));
    S_FIELD (herald_range_t, "Range", from_ts);
    S_FIELD (herald_range_t, "Range", to);
    S_FIELD (herald_range_t, "Range", until_ts);
    S_FIELD (herald_range_t, "Range", prefixes);

    S_SIZE (herald_agent_stats_t, "Stats");
    S_FIELD (herald_agent_stats_t, "Stats", delivered);
    S_FIELD (herald_agent_stats_t, "Stats", duplicates);
    S_FIELD (herald_agent_stats_t, "Stats", gaps_repaired);
    S_FIELD (herald_agent_stats_t, "Stats", replays);
    S_FIELD (herald_agent_stats_t, "Stats", live_overflows);
    S_FIELD (herald_agent_stats_t, "Stats", retries);
    S_FIELD (herald_agent_stats_t, "Stats", published);
    S_FIELD (herald_agent_stats_t, "Stats", publish_errors);
    S_FIELD (herald_agent_stats_t, "Stats", outbox_depth);
    S_FIELD (herald_agent_stats_t, "Stats", outbox_bytes);
    S_FIELD (herald_agent_stats_t, "Stats", broker_head);
    S_FIELD (herald_agent_stats_t, "Stats", broker_epoch);
    S_FIELD (herald_agent_stats_t, "Stats", lag);
    S_FIELD (herald_agent_stats_t, "Stats", broker_reachable);
    S_FIELD (herald_agent_stats_t, "Stats", state_recovered);
    S_FIELD (herald_agent_stats_t, "Stats", replay_errors);
    S_FIELD (herald_agent_stats_t, "Stats", repair_replays);
    S_FIELD (herald_agent_stats_t, "Stats", gaps);
    S_FIELD (herald_agent_stats_t, "Stats", data_lost);
    S_FIELD (herald_agent_stats_t, "Stats", broker_lineage);
    S_FIELD (herald_agent_stats_t, "Stats", node);
    S_FIELD (herald_agent_stats_t, "Stats", node_api);
    S_FIELD (herald_agent_stats_t, "Stats", failovers);
    S_FIELD (herald_agent_stats_t, "Stats", leader_redirects);
    S_FIELD (herald_agent_stats_t, "Stats", nodes_known);
    S_FIELD (herald_agent_stats_t, "Stats", auth_refused);

    //  Schema evolution (docs/schemas.md)
    S_SIZE (herald_cast_result_t, "CastResult");
    S_FIELD (herald_cast_result_t, "CastResult", buffer);
    S_FIELD (herald_cast_result_t, "CastResult", capacity);
    S_FIELD (herald_cast_result_t, "CastResult", data);
    S_FIELD (herald_cast_result_t, "CastResult", data_len);
    S_FIELD (herald_cast_result_t, "CastResult", message);
    S_SIZE (herald_schema_want_t, "SchemaWant");
    S_FIELD (herald_schema_want_t, "SchemaWant", type);
    S_FIELD (herald_schema_want_t, "SchemaWant", schema);
    S_SIZE (herald_subscribe_options_t, "SubscribeOptions");
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", prefixes);
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", start);
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", group);
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", wants);
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", want_count);
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", default_schema);
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", on_incompatible);
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", on_parked);
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", on_parked_arg);
    S_FIELD (herald_subscribe_options_t, "SubscribeOptions", caller_position);
    S_SIZE (herald_schema_stats_t, "SchemaStats");
    S_FIELD (herald_schema_stats_t, "SchemaStats", upcast);
    S_FIELD (herald_schema_stats_t, "SchemaStats", downcast);
    S_FIELD (herald_schema_stats_t, "SchemaStats", skipped);
    S_FIELD (herald_schema_stats_t, "SchemaStats", parked);
    S_FIELD (herald_schema_stats_t, "SchemaStats", stopped);
    return 0;
}
