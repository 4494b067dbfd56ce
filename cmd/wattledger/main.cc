#include "cmd/wattledger/commands.h"

int main(int argc, char** argv) { return wattledger::cmd::Main(argc, argv); }
