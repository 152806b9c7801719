// The framing of the mortised <-> mortise-vmm control channel: frames survive any split of the
// byte stream, and a peer cannot make the reader allocate without bound or accept garbage.
#include "control_channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "tenon/v1/vmm.pb.h"

namespace mortise {
namespace {

tenon::v1::VmmEvent console_event(uint64_t offset, const std::string& data) {
  tenon::v1::VmmEvent event;
  event.mutable_console()->set_offset(offset);
  event.mutable_console()->set_data(data);
  return event;
}

TEST(ControlChannel, FramesSurviveAnySplitOfTheStream) {
  std::string stream;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::string> frame = frame_message(console_event(i, std::string(i * 7, 'x')));
    ASSERT_TRUE(frame.ok());
    stream += *frame;
  }
  for (size_t piece = 1; piece <= stream.size(); ++piece) {
    FrameReader reader;
    int parsed = 0;
    for (size_t at = 0; at < stream.size(); at += piece) {
      reader.append(stream.data() + at, std::min(piece, stream.size() - at));
      for (;;) {
        tenon::v1::VmmEvent event;
        absl::StatusOr<bool> next = reader.next_message(event);
        ASSERT_TRUE(next.ok()) << next.status();
        if (!*next) break;
        EXPECT_EQ(event.console().offset(), static_cast<uint64_t>(parsed));
        EXPECT_EQ(event.console().data().size(), static_cast<size_t>(parsed * 7));
        ++parsed;
      }
    }
    EXPECT_EQ(parsed, 3) << "piece size " << piece;
  }
}

TEST(ControlChannel, OversizedLengthIsRefusedBeforeAnythingIsBuffered) {
  FrameReader reader;
  const char length[4] = {0x00, 0x00, 0x00, 0x7f};  // about 2 GiB
  reader.append(length, sizeof(length));
  tenon::v1::VmmEvent event;
  absl::StatusOr<bool> next = reader.next_message(event);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), absl::StatusCode::kDataLoss);
}

TEST(ControlChannel, GarbagePayloadIsAnErrorNotAnEvent) {
  FrameReader reader;
  const char frame[] = {0x03, 0x00, 0x00, 0x00, '\xff', '\xff', '\xff'};
  reader.append(frame, sizeof(frame));
  tenon::v1::VmmEvent event;
  EXPECT_FALSE(reader.next_message(event).ok());
}

TEST(ControlChannel, MessagesCrossASocketAndEndOfFileIsReported) {
  int sockets[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sockets), 0);
  tenon::v1::VmmCommand command;
  command.set_request_id(42);
  command.mutable_pause();
  ASSERT_TRUE(send_message(sockets[0], command).ok());
  close(sockets[0]);
  FrameReader reader;
  tenon::v1::VmmCommand received;
  absl::StatusOr<ReadOutcome> outcome = read_into(sockets[1], reader, /*nonblocking=*/false);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, ReadOutcome::kData);
  ASSERT_TRUE(*reader.next_message(received));
  EXPECT_EQ(received.request_id(), 42u);
  EXPECT_TRUE(received.has_pause());
  outcome = read_into(sockets[1], reader, /*nonblocking=*/false);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, ReadOutcome::kEndOfFile);
  close(sockets[1]);
}

TEST(ControlChannel, WritingToAClosedPeerIsAnErrorNotASignal) {
  int sockets[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sockets), 0);
  close(sockets[1]);
  tenon::v1::VmmCommand command;
  command.mutable_stop();
  EXPECT_FALSE(send_message(sockets[0], command).ok());
  close(sockets[0]);
}

}  // namespace
}  // namespace mortise
