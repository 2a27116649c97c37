import Foundation

/// Made-up functions of other domains (weather, e-mail, flights, finance, geometry…) for
/// synthetic training data: a model that only ever saw the three built-in tools calls one of
/// them for everything. With these it sees many signatures, calls the one that fits with the
/// arguments taken from the request, and — as important — answers without a call when none of
/// the listed functions fits. Results are invented but consistent with the call; they are only
/// ever training text, never executed.
struct ForeignTool: Sendable {
    /// Its signature, as a user's tools file or a benchmark would give it.
    var definition: ToolDefinition
    /// What it does, for "none of the tools can …" answers.
    var capability: String
    /// Request phrasings, arguments, the invented result and the answer, from random draws.
    var example: @Sendable (inout ForeignToolDraw) -> (requests: [String], arguments: JSONValue, result: JSONValue, answer: String)

    static func schema(_ properties: [(String, String, String)], required: [String]) -> JSONValue {
        .object([
            ("type", .string("object")),
            ("properties", .object(properties.map { name, type, description in
                (name, .object([("type", .string(type)), ("description", .string(description))]))
            })),
            ("required", .array(required.map { .string($0) })),
        ])
    }
}

/// The random draws a foreign tool example needs (the generator's own stream).
struct ForeignToolDraw {
    var int: (ClosedRange<Int>) -> Int
    func pick<T>(_ options: [T]) -> T { options[int(0...(options.count - 1))] }
}

extension ForeignTool {
    private static let cities = ["Paris", "Tokyo", "Chicago", "Berlin", "Lima", "Nairobi", "Oslo", "Denver", "Madrid", "Seoul", "Toronto", "Cairo"]
    private static let names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]

    /// The catalogue.
    static let all: [ForeignTool] = [
        ForeignTool(
            definition: ToolDefinition(name: "get_weather", description: "Get the current weather for a city.",
                                       parameters: schema([("location", "string", "The city name, e.g. Paris"),
                                                           ("unit", "string", "celsius or fahrenheit")], required: ["location"])),
            capability: "look up the weather",
            example: { d in
                let city = d.pick(cities), t = d.int(-5...34), sky = d.pick(["sunny", "cloudy", "rainy", "windy"])
                return (["What's the weather like in \(city)?", "Is it raining in \(city) right now?", "How warm is it in \(city) today?",
                         "Weather in \(city), please.", "Do I need an umbrella in \(city) today?", "Tell me the weather forecast for \(city)."],
                        .object([("location", .string(city))]),
                        .object([("temperature", .number(Double(t))), ("condition", .string(sky))]),
                        "In \(city) it is \(t) °C and \(sky).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "get_stock_price", description: "Get the latest price of a stock by its ticker symbol.",
                                       parameters: schema([("symbol", "string", "Ticker symbol, e.g. AAPL")], required: ["symbol"])),
            capability: "look up stock prices",
            example: { d in
                let (company, symbol) = d.pick([("Apple", "AAPL"), ("Microsoft", "MSFT"), ("Tesla", "TSLA"), ("Amazon", "AMZN"), ("Google", "GOOGL"), ("Nvidia", "NVDA")])
                let price = Double(d.int(1000...90000)) / 100
                return (["What is \(company)'s stock price?", "How much is one \(symbol) share right now?", "Get me the current price of \(symbol).",
                         "What's \(company) trading at today?", "Check the \(company) share price."],
                        .object([("symbol", .string(symbol))]), .object([("symbol", .string(symbol)), ("price", .number(price))]),
                        "\(company) (\(symbol)) is trading at $\(JSONValue.format(price)).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "send_email", description: "Send an e-mail.",
                                       parameters: schema([("to", "string", "Recipient address"), ("subject", "string", "Subject line"),
                                                           ("body", "string", "Message text")], required: ["to", "subject", "body"])),
            capability: "send e-mail",
            example: { d in
                let name = d.pick(names), subject = d.pick(["Lunch", "Meeting moved", "Thanks", "Report", "Weekend plans"])
                let body = d.pick(["See you at noon.", "The meeting is now at 3 pm.", "Thank you for your help!", "The report is attached.", "Are you free on Saturday?"])
                let address = "\(name)@example.com"
                return (["Send an email to \(address) with the subject \"\(subject)\" saying \"\(body)\"",
                         "Email \(address): subject \"\(subject)\", message \"\(body)\"",
                         "Please write to \(address), subject \"\(subject)\", and tell them \"\(body)\"",
                         "Mail \(address) with subject \(subject) and the text: \(body)"],
                        .object([("to", .string(address)), ("subject", .string(subject)), ("body", .string(body))]),
                        .object([("status", .string("sent"))]), "Done: the e-mail to \(address) has been sent.")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "calculate_bmi", description: "Calculate body mass index from weight and height.",
                                       parameters: schema([("weight_kg", "number", "Weight in kilograms"), ("height_m", "number", "Height in meters")],
                                                          required: ["weight_kg", "height_m"])),
            capability: "compute a body mass index",
            example: { d in
                let w = d.int(45...120), h = Double(d.int(150...200)) / 100
                let bmi = (Double(w) / (h * h) * 10).rounded() / 10
                return (["I weigh \(w) kg and I am \(JSONValue.format(h)) m tall. What is my BMI?", "BMI for \(w) kg and \(JSONValue.format(h)) m?",
                         "Calculate the body mass index of someone who is \(JSONValue.format(h)) meters tall and weighs \(w) kilograms.",
                         "What's the BMI of a \(w) kg person with a height of \(JSONValue.format(h)) m?"],
                        .object([("weight_kg", .number(Double(w))), ("height_m", .number(h))]), .object([("bmi", .number(bmi))]),
                        "The BMI is \(JSONValue.format(bmi)).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "translate_text", description: "Translate text into another language.",
                                       parameters: schema([("text", "string", "The text to translate"), ("target_language", "string", "Language name, e.g. Spanish")],
                                                          required: ["text", "target_language"])),
            capability: "translate text",
            example: { d in
                let (text, language, translation) = d.pick([("good morning", "Spanish", "buenos días"), ("thank you", "French", "merci"),
                                                            ("where is the station?", "German", "Wo ist der Bahnhof?"), ("I love books", "Italian", "Amo i libri"),
                                                            ("see you tomorrow", "Spanish", "hasta mañana"), ("good night", "French", "bonne nuit")])
                return (["Translate \"\(text)\" into \(language).", "How do you say \"\(text)\" in \(language)?", "What is \"\(text)\" in \(language)?",
                         "Can you translate \"\(text)\" to \(language) for me?"],
                        .object([("text", .string(text)), ("target_language", .string(language))]),
                        .object([("translation", .string(translation))]), "In \(language): \"\(translation)\".")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "find_restaurants", description: "Find restaurants in a city, optionally by cuisine.",
                                       parameters: schema([("location", "string", "City"), ("cuisine", "string", "e.g. Italian")], required: ["location"])),
            capability: "search for restaurants",
            example: { d in
                let city = d.pick(cities), cuisine = d.pick(["Italian", "Thai", "Mexican", "Indian", "Japanese", "vegan"])
                let place = d.pick(["Casa Verde", "Golden Spoon", "Little Lotus", "Blue Door", "Sakura House"])
                return (["Find me \(cuisine) restaurants in \(city).", "Where can I eat \(cuisine) food in \(city)?", "Any good \(cuisine) places in \(city)?",
                         "I'm in \(city) and want \(cuisine) food. Suggestions?", "Look up \(cuisine) restaurants near \(city)."],
                        .object([("location", .string(city)), ("cuisine", .string(cuisine))]),
                        .object([("results", .array([.string(place)]))]), "Try \(place), a \(cuisine) restaurant in \(city).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "book_flight", description: "Book a flight between two cities on a date.",
                                       parameters: schema([("origin", "string", "Departure city"), ("destination", "string", "Arrival city"),
                                                           ("date", "string", "YYYY-MM-DD")], required: ["origin", "destination", "date"])),
            capability: "book flights",
            example: { d in
                let from = d.pick(cities), to = d.pick(cities.filter { $0 != from })
                let date = "2025-\(String(format: "%02d", d.int(1...12)))-\(String(format: "%02d", d.int(1...28)))"
                return (["Book a flight from \(from) to \(to) on \(date).", "I need to fly \(from) to \(to) on \(date).",
                         "Get me a plane ticket to \(to) from \(from), date \(date).", "Reserve a flight \(from) → \(to) for \(date)."],
                        .object([("origin", .string(from)), ("destination", .string(to)), ("date", .string(date))]),
                        .object([("confirmation", .string("BK\(d.int(1000...9999))"))]), "Your flight from \(from) to \(to) on \(date) is booked.")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "get_exchange_rate", description: "Get the exchange rate between two currencies.",
                                       parameters: schema([("base_currency", "string", "ISO code, e.g. USD"), ("target_currency", "string", "ISO code, e.g. EUR")],
                                                          required: ["base_currency", "target_currency"])),
            capability: "look up exchange rates",
            example: { d in
                let (a, an) = d.pick([("USD", "US dollar"), ("EUR", "euro"), ("GBP", "British pound"), ("JPY", "Japanese yen")])
                let (b, bn) = d.pick([("CHF", "Swiss francs"), ("CAD", "Canadian dollars"), ("INR", "Indian rupees"), ("AUD", "Australian dollars")])
                let rate = Double(d.int(50...2000)) / 1000
                return (["What is the exchange rate from \(a) to \(b)?", "How many \(bn) do I get for one \(an)?", "Convert currency: \(a) to \(b) rate?",
                         "What's one \(an) worth in \(bn) today?"],
                        .object([("base_currency", .string(a)), ("target_currency", .string(b))]), .object([("rate", .number(rate))]),
                        "One \(an) is \(JSONValue.format(rate)) \(bn).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "circle_area", description: "Calculate the area of a circle from its radius.",
                                       parameters: schema([("radius", "number", "The radius")], required: ["radius"])),
            capability: "compute the area of a circle",
            example: { d in
                let r = d.int(1...50), area = (Double(r * r) * Double.pi * 100).rounded() / 100
                return (["What is the area of a circle with radius \(r)?", "Find the area of a circle whose radius is \(r) cm.",
                         "A circle has a radius of \(r). How big is its area?", "Area of a circle, r = \(r)?"],
                        .object([("radius", .number(Double(r)))]), .object([("area", .number(area))]), "The area is \(JSONValue.format(area)).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "compound_interest", description: "Compute the final amount of an investment with yearly compound interest.",
                                       parameters: schema([("principal", "number", "Initial amount"), ("rate", "number", "Yearly interest rate in percent"),
                                                           ("years", "integer", "Number of years")], required: ["principal", "rate", "years"])),
            capability: "compute compound interest",
            example: { d in
                let p = d.int(1...50) * 100, rate = d.int(1...9), years = d.int(1...30)
                let amount = (Double(p) * pow(1 + Double(rate) / 100, Double(years)) * 100).rounded() / 100
                return (["If I invest $\(p) at \(rate)% a year for \(years) years, how much will I have?",
                         "Compound interest on \(p) dollars at \(rate) percent over \(years) years?",
                         "What does $\(p) grow to after \(years) years at \(rate)% interest?", "Calculate the final amount: principal \(p), rate \(rate)%, \(years) years."],
                        .object([("principal", .number(Double(p))), ("rate", .number(Double(rate))), ("years", .number(Double(years)))]),
                        .object([("amount", .number(amount))]), "After \(years) years you will have $\(JSONValue.format(amount)).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "set_timer", description: "Start a countdown timer.",
                                       parameters: schema([("minutes", "integer", "Length of the timer in minutes")], required: ["minutes"])),
            capability: "set timers",
            example: { d in
                let m = d.int(1...90)
                return (["Set a timer for \(m) minutes.", "Start a \(m)-minute timer.", "Remind me in \(m) minutes with a timer.", "Timer: \(m) min, please."],
                        .object([("minutes", .number(Double(m)))]), .object([("status", .string("started"))]), "Your \(m)-minute timer is running.")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "get_population", description: "Get the population of a country.",
                                       parameters: schema([("country", "string", "Country name")], required: ["country"])),
            capability: "look up populations",
            example: { d in
                let (country, millions) = d.pick([("Japan", 124), ("Brazil", 216), ("Kenya", 55), ("Canada", 40), ("Germany", 84), ("Peru", 34)])
                return (["What is the population of \(country)?", "How many people live in \(country)?", "Population of \(country)?",
                         "Tell me how many inhabitants \(country) has."],
                        .object([("country", .string(country))]), .object([("population", .number(Double(millions) * 1e6))]),
                        "\(country) has about \(millions) million people.")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "search_recipes", description: "Search cooking recipes by main ingredient.",
                                       parameters: schema([("ingredient", "string", "Main ingredient")], required: ["ingredient"])),
            capability: "search recipes",
            example: { d in
                let ingredient = d.pick(["chicken", "tofu", "lentils", "salmon", "mushrooms", "eggs"])
                let dish = d.pick(["a quick stir-fry", "a warm soup", "a baked dish", "a simple salad"])
                return (["Find a recipe with \(ingredient).", "What can I cook with \(ingredient)?", "Give me recipe ideas for \(ingredient).",
                         "I have \(ingredient) at home. Any recipes?"],
                        .object([("ingredient", .string(ingredient))]), .object([("recipes", .array([.string(dish)]))]),
                        "You could make \(dish) with \(ingredient).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "get_distance", description: "Get the driving distance between two cities in kilometers.",
                                       parameters: schema([("origin", "string", "Start city"), ("destination", "string", "End city")], required: ["origin", "destination"])),
            capability: "measure distances between cities",
            example: { d in
                let from = d.pick(cities), to = d.pick(cities.filter { $0 != from }), km = d.int(50...9000)
                return (["How far is it from \(from) to \(to)?", "What is the distance between \(from) and \(to)?", "Distance \(from) to \(to) by road?",
                         "How many kilometers from \(from) to \(to)?"],
                        .object([("origin", .string(from)), ("destination", .string(to))]), .object([("distance_km", .number(Double(km)))]),
                        "It is about \(km) km from \(from) to \(to).")
            }),
        // Knowledge lookups: questions a model could answer from memory, which it must send to
        // the listed function instead (BFCL's history and science questions list such a lookup;
        // the last adapter answered them itself). The facts are real, so answers are right.
        ForeignTool(
            definition: ToolDefinition(name: "history.get_event_date", description: "Get the date of a historical event.",
                                       parameters: schema([("event", "string", "The name of the event"),
                                                           ("format", "string", "Date format, e.g. YYYY. Default: full date")], required: ["event"])),
            capability: "look up historical dates",
            example: { d in
                let (event, year) = d.pick([("the fall of the Berlin Wall", 1989), ("the first Moon landing", 1969), ("the signing of the Magna Carta", 1215),
                                            ("the storming of the Bastille", 1789), ("the sinking of the Titanic", 1912), ("the Battle of Hastings", 1066),
                                            ("the signing of the Treaty of Versailles", 1919), ("the end of World War II", 1945)])
                let name = String(event.dropFirst(4))
                return (["When did \(event) happen?", "In what year was \(event)?", "What year did \(event) take place?",
                         "Give me the date of \(event).", "Tell me when \(event) was."],
                        .object([("event", .string(name))]), .object([("event", .string(name)), ("year", .number(Double(year)))]),
                        "\(name.prefix(1).uppercased() + name.dropFirst()) took place in \(year).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "science.find_discoverer", description: "Find who made a scientific discovery, and when.",
                                       parameters: schema([("discovery", "string", "The discovery, e.g. a substance or particle")], required: ["discovery"])),
            capability: "look up scientific discoveries",
            example: { d in
                let (discovery, phrase, who, year) = d.pick([("penicillin", "penicillin", "Alexander Fleming", 1928), ("electron", "the electron", "J. J. Thomson", 1897),
                                                             ("X-rays", "X-rays", "Wilhelm Röntgen", 1895), ("oxygen", "oxygen", "Joseph Priestley", 1774),
                                                             ("proton", "the proton", "Ernest Rutherford", 1917), ("insulin", "insulin", "Frederick Banting and Charles Best", 1921)])
                return (["Who discovered \(phrase)?", "Who first found \(phrase), and when?", "Tell me who discovered \(phrase).",
                         "Which scientist discovered \(phrase)?", "When was \(phrase) discovered, and by whom?"],
                        .object([("discovery", .string(discovery))]), .object([("discoverer", .string(who)), ("year", .number(Double(year)))]),
                        "\(phrase.prefix(1).uppercased() + phrase.dropFirst()) was discovered by \(who) in \(year).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "get_head_of_state", description: "Find who led a country in a given year.",
                                       parameters: schema([("country", "string", "Country name"), ("year", "integer", "The year")], required: ["country", "year"])),
            capability: "look up historical leaders",
            example: { d in
                let (country, year, leader) = d.pick([("the United States", 1962, "John F. Kennedy"), ("the United Kingdom", 1942, "Winston Churchill"),
                                                      ("the United States", 1935, "Franklin D. Roosevelt"), ("France", 1960, "Charles de Gaulle"),
                                                      ("India", 1950, "Jawaharlal Nehru"), ("South Africa", 1995, "Nelson Mandela")])
                let name = country.hasPrefix("the ") ? String(country.dropFirst(4)) : country
                return (["Who led \(country) in \(year)?", "Who was the leader of \(country) in \(year)?", "Who was in charge of \(country) in \(year)?",
                         "Name the head of \(country) in \(year).", "In \(year), who governed \(country)?"],
                        .object([("country", .string(name)), ("year", .number(Double(year)))]), .object([("leader", .string(leader))]),
                        "In \(year), \(country) was led by \(leader).")
            }),
        ForeignTool(
            definition: ToolDefinition(name: "biology.function_lookup", description: "Look up what a molecule, cell part or organ does.",
                                       parameters: schema([("name", "string", "The molecule, cell part or organ")], required: ["name"])),
            capability: "look up biological functions",
            example: { d in
                let (name, role) = d.pick([("ribosome", "builds proteins from amino acids"), ("hemoglobin", "carries oxygen in the blood"),
                                           ("chlorophyll", "absorbs light for photosynthesis"), ("the liver", "filters the blood and makes bile"),
                                           ("the cell membrane", "controls what enters and leaves the cell"), ("white blood cells", "fight infections")])
                return (["What does \(name) do?", "What is the function of \(name)?", "What role does \(name) play in the body?",
                         "Explain what \(name) is for.", "Look up the function of \(name)."],
                        .object([("name", .string(name))]), .object([("function", .string(role))]),
                        "\(name.prefix(1).uppercased() + name.dropFirst()): it \(role).")
            }),
    ]
}
