// cxx_inventory: standard containers that survive restarts.
//
// Each run opens (or creates) the heap file, adds the counts given on the
// command line to a std::map kept in the heap, appends a line to a
// std::vector of strings there, prints both, and commits.  Run it several
// times: the counts add up, because the containers, their strings and
// their allocators come back intact.
//
//     cxx_inventory FILE [ITEM COUNT]...
#include <mmheap.hpp>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string_view>
#include <vector>

// Containers in the heap draw from it with mmh::allocator; std::less<>
// lets the map find a key from a string_view, without making a string.
using Stock = std::map<mmh::string, long, std::less<>,
                       mmh::allocator<std::pair<const mmh::string, long>>>;
using Log = std::vector<mmh::string, mmh::allocator<mmh::string>>;

int main(int argc, char **argv)
{
    if (argc < 2 || argc % 2 != 0) {
        std::fprintf(stderr, "usage: %s FILE [ITEM COUNT]...\n", argv[0]);
        return 2;
    }
    try {
        mmh_config cfg{};
        cfg.flags = MMH_CREATE;
        mmh::heap h(argv[1], cfg);

        // Found by name in later runs; made, empty, in the first.
        Stock *stock = h.find_or_construct<Stock>("stock", h);
        Log *log = h.find_or_construct<Log>("log", h);

        mmh::allocator<char> alloc(h); // every string in the heap needs it
        for (int i = 2; i < argc; i += 2) {
            auto it = stock->find(std::string_view(argv[i]));
            if (it == stock->end())
                it = stock->emplace(mmh::string(argv[i], alloc), 0).first;
            it->second += std::atol(argv[i + 1]);
        }
        char line[64];
        std::snprintf(line, sizeof line, "run %zu changed %d items", log->size() + 1,
                      (argc - 2) / 2);
        log->emplace_back(line, alloc);

        for (const auto &[item, count] : *stock)
            std::printf("%-16s %6ld\n", item.c_str(), count);
        for (const auto &entry : *log)
            std::printf("  %s\n", entry.c_str());
        h.commit(); // durable now (closing the heap would commit too)
    } catch (const std::exception &e) { // mmh::error, std::bad_alloc
        std::fprintf(stderr, "cxx_inventory: %s\n", e.what());
        return 1;
    }
    return 0;
}
