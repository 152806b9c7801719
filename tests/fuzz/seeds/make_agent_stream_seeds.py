#!/usr/bin/env python3
# Writes the seeds of agent_stream_fuzz (seeds/agent_stream/*.bin) from the text-format messages
# below, encoded by protoc: records of a control byte, a varint length and a serialized
# tenon.v1.AgentMessage (agent_stream_fuzz.cc describes the control byte). Run from anywhere after
# changing the fuzzer's fleet or agent.proto: python3 tests/fuzz/seeds/make_agent_stream_seeds.py
import hashlib
import pathlib
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parents[2] / "proto"


# The fuzzer's fleet: Deployment "control" on edge-a (the fuzzed stream) and edge-b; instance
# names as planner.cc's instance_name() makes them.
def instance(device):
    return "control-" + hashlib.sha256(f"control/{device}".encode()).hexdigest()[:12]


A, B = instance("edge-a"), instance("edge-b")
HANDLE, FOREIGN_STREAM, AS_B, RECONNECT, IMPOSTOR = 0, 5, 6, 7, 0x87
NO_IMAGE = "sha256:" + "0" * 64

SEEDS = {
    "reports": [
        (HANDLE, f'sequence: 1 instance_status {{ instance_name: "{A}" state: INSTANCE_STATE_RUNNING'
                 ' restart_count: 1 message: "restarted" }'),
        (HANDLE, f'sequence: 2 telemetry {{ instances {{ instance_name: "{A}" run_id: "r1" tasks {{'
                 ' task_name: "pid" period_ns: 1000000 jobs: 1000 deadline_misses: 2 } } }'),
        (HANDLE, f'sequence: 3 console {{ instance_name: "{A}" chunk {{ offset: 0 data: "boot\\n" }} }}'),
        (HANDLE, f'sequence: 4 console {{ instance_name: "{A}" chunk {{ offset: 18446744073709551610'
                 ' data: "wrap" } }'),
        (HANDLE, f'sequence: 5 instance_status {{ instance_name: "{A}" state: INSTANCE_STATE_EXITED'
                 ' exit_reason { kind: EXIT_KIND_GUEST_EXIT status: 0 message: "done" } }'),
    ],
    "acks_and_images": [
        (HANDLE, "sequence: 1 ack { controller_sequence: 1 desired_state_version: 1"
                 " outcome: ACK_OUTCOME_ACCEPTED }"),
        (HANDLE, 'sequence: 2 ack { controller_sequence: 2 desired_state_version: 99'
                 ' outcome: ACK_OUTCOME_REJECTED message: "not enough real-time cores" }'),
        (HANDLE, f'sequence: 3 image_request {{ digest: "{NO_IMAGE}" offset: 0 }}'),
        (HANDLE, 'sequence: 4 image_request { digest: "" offset: 100 }'),
        (HANDLE, 'sequence: 5 snapshot_upload { migration_id: "m-1" instance_name: "x"'
                 ' chunk { offset: 0 data: "abc" } }'),
    ],
    "neighbour": [
        (HANDLE, f'sequence: 1 instance_status {{ instance_name: "{B}" state: INSTANCE_STATE_CRASHED }}'),
        (HANDLE, f'sequence: 2 telemetry {{ instances {{ instance_name: "{B}" tasks {{'
                 ' task_name: "pid" deadline_misses: 1000 } } }'),
        (HANDLE, f'sequence: 3 console {{ instance_name: "{B}" chunk {{ data: "not mine" }} }}'),
        (AS_B, f'sequence: 4 instance_status {{ instance_name: "{B}" state: INSTANCE_STATE_FAULTED }}'),
        (FOREIGN_STREAM, f'sequence: 5 instance_status {{ instance_name: "{A}"'
                         ' state: INSTANCE_STATE_PAUSED }'),
    ],
    "reconnects": [
        (RECONNECT, f'sequence: 1 hello {{ acknowledged_desired_state_version: 0'
                    f' image_digests: "{NO_IMAGE}"'
                    f' instances {{ instance_name: "{A}" state: INSTANCE_STATE_RUNNING }}'
                    f' instances {{ instance_name: "{B}" state: INSTANCE_STATE_CRASHED }}'
                    ' profile { arch: ARCH_X86_64 cores: 64 } }'),
        (HANDLE, f'sequence: 2 instance_status {{ instance_name: "{A}" state: INSTANCE_STATE_PAUSED }}'),
        (IMPOSTOR, 'sequence: 1 hello { device_name: "edge-b" credential: "tenon-device-guess" }'),
        (HANDLE, f'sequence: 3 instance_status {{ instance_name: "{A}" state: INSTANCE_STATE_RUNNING }}'),
    ],
    "stream_errors": [
        (HANDLE, "sequence: 1"),  # no kind: the stream ends
        (HANDLE, f'sequence: 2 instance_status {{ instance_name: "{A}" state: INSTANCE_STATE_PAUSED }}'),
        (RECONNECT, "sequence: 1 hello { }"),
        (HANDLE, 'sequence: 2 hello { device_name: "edge-a" }'),  # a second Hello
    ],
}


def encode(text):
    return subprocess.run(
        ["protoc", f"-I{PROTO_ROOT}", "--encode=tenon.v1.AgentMessage", "tenon/v1/agent.proto"],
        input=text.encode(), capture_output=True, check=True).stdout


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def main():
    out_dir = HERE / "agent_stream"
    out_dir.mkdir(exist_ok=True)
    for name, records in SEEDS.items():
        data = b"".join(bytes([control]) + varint(len(m)) + m
                        for control, m in ((c, encode(t)) for c, t in records))
        (out_dir / f"{name}.bin").write_bytes(data)


if __name__ == "__main__":
    main()
