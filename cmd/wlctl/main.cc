#include <iostream>

#include "cmd/wlctl/wlctl.h"

int main(int argc, char** argv) { return wattledger::wlctl::Run(argc, argv, std::cout, std::cerr); }
