"""Writes train.csv from the project's own phrase lists: each phrase is varied with politeness, anger,
order numbers and typos (seeded, so the file is reproducible); German and French phrases come from
phrases_de_fr.py. The held-out test.csv, test_second.csv and test_de_fr.csv are written by hand
and never generated from these lists.

    python -m doorstep.conversations.nlu.data.generate_train
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

from doorstep.conversations.nlu.data.phrases_de_fr import LANGUAGES

HERE = Path(__file__).parent

PHRASES: dict[str, list[str]] = {
    "track_order": [
        "where is my order",
        "where's my parcel",
        "track my order",
        "tracking for my package",
        "what is the status of my order",
        "has my order shipped",
        "has my package been dispatched",
        "I haven't received my order yet",
        "my order hasn't arrived",
        "order status",
        "where is my stuff",
        "can you tell me where my package is",
        "is my order on its way",
        "did you send my order",
        "my parcel is still not here",
        "any update on my order",
        "I want to track my delivery",
        "has it been sent yet",
        "what's happening with my order",
        "still waiting for my shoes",
        "the tracking hasn't updated in days",
        "my package seems stuck",
        "I ordered a week ago and nothing",
        "where is it",
        "wheres my order",
        "status of order",
        "can I get a tracking number",
        "what's the tracking link",
        "is my parcel lost",
        "has my order left the warehouse",
        "no news about my order",
        "what happened to my delivery",
        "order still not shipped?",
        "can you check my order please",
        "I want to know where my package is now",
        "locate my parcel",
        "tracking info please",
        "my delivery never came",
        "is it shipped",
        "where are my items",
    ],
    "delivery_eta": [
        "when will my order arrive",
        "when will it be delivered",
        "what time is the delivery",
        "when is my parcel coming",
        "delivery date please",
        "what day will my package come",
        "will it arrive before the weekend",
        "expected delivery time",
        "how long until my order gets here",
        "will my order arrive tomorrow",
        "when can I expect my package",
        "what's the ETA",
        "eta for my parcel",
        "is it coming today",
        "what time will the driver come",
        "will it be here by friday",
        "how many days until delivery",
        "arrival time of my order",
        "when does the courier come",
        "is the delivery still on schedule",
        "what is the delivery window",
        "will it arrive on time",
        "is my order going to be late",
        "when should I be home for the delivery",
        "estimated arrival",
        "what time slot is my delivery",
        "will I get it before christmas",
        "is it arriving this morning or afternoon",
        "how soon will I receive it",
        "when's it due",
    ],
    "reschedule_delivery": [
        "can I change the delivery date",
        "reschedule my delivery",
        "I won't be home, can you deliver another day",
        "please deliver next tuesday instead",
        "move my delivery to friday",
        "can it come tomorrow afternoon instead",
        "I'm away that day, change the day",
        "deliver on saturday please",
        "change delivery time",
        "I need a different delivery slot",
        "postpone the delivery",
        "can the delivery be later in the week",
        "not home on thursday, another day please",
        "pick a new delivery day",
        "deliver it on the 12th instead",
        "can you hold the parcel until monday",
        "change my delivery slot to the evening",
        "I'd like to rebook the delivery",
        "delay my delivery by a few days",
        "can I choose another date",
        "arrange a new delivery date",
        "redeliver tomorrow morning please",
        "I missed the delivery, can you try again on monday",
        "can you bring it next week instead",
        "different day please",
    ],
    "change_delivery_address": [
        "change my delivery address",
        "I moved, update the shipping address",
        "send it to my work address instead",
        "deliver to a pickup point",
        "can I collect it from a parcel shop",
        "redirect my parcel",
        "leave it in the garage",
        "leave the package with my neighbour",
        "can you leave it in a safe place",
        "deliver to a different address",
        "wrong address on my order",
        "I typed the wrong postcode",
        "send it to my parents' house",
        "leave it behind the bin",
        "ship to a locker instead",
        "I want to pick it up at the post office",
        "update the street name on my order",
        "change the postcode",
        "can the driver leave it at the back door",
        "put it in the porch",
        "redirect to pickup location",
        "deliver to my office instead",
        "new address for delivery",
        "leave at front door if nobody is home",
        "the house number is wrong",
        "can I change where it's delivered",
    ],
    "cancel_order": [
        "cancel my order",
        "I want to cancel",
        "please cancel the order",
        "I changed my mind, cancel it",
        "cancel order",
        "can I still cancel",
        "stop my order",
        "I don't want it anymore, cancel",
        "I ordered by mistake, cancel please",
        "how do I cancel my purchase",
        "cancel before it ships",
        "remove my order",
        "I'd like to cancel my purchase",
        "don't send it",
        "abort the order",
        "cancel the whole order",
        "can you cancel order",
        "I want to cancel the shoes I ordered",
        "please don't ship my order",
        "void my order",
        "i need to cancel asap",
    ],
    "start_return": [
        "I want to return an item",
        "how do I return this",
        "start a return",
        "return my order",
        "I need a return label",
        "the shoes don't fit, I want to send them back",
        "can I exchange for a bigger size",
        "exchange for a different colour",
        "I'd like to swap it for another size",
        "send it back",
        "return request",
        "it's too small, can I exchange it",
        "how do I send back the jacket",
        "I don't like it, return",
        "can I get a return label",
        "I want my money back, returning the item",
        "returning a product",
        "how to make a return",
        "exchange please",
        "it doesn't fit",
        "I want to swap the trainers",
        "too big, need a smaller one",
        "book a return pickup",
        "can you collect the return from my house",
        "I want to return part of my order",
    ],
    "refund_status": [
        "where is my refund",
        "when will I get my money back",
        "refund status",
        "has my refund been processed",
        "I returned it and still no refund",
        "did you get my return",
        "I sent it back two weeks ago, where's my money",
        "has the return arrived",
        "when will the refund show in my account",
        "still waiting for my refund",
        "was my refund issued",
        "how long do refunds take",
        "refund not received",
        "money back status",
        "did my return arrive at the warehouse",
        "you have my return, where's the refund",
        "check my refund",
        "status of my return",
        "have you received the parcel I returned",
        "is my refund on the way",
    ],
    "report_problem": [
        "my item arrived damaged",
        "the box was crushed and the product is broken",
        "an item is missing from my order",
        "you sent me the wrong item",
        "it says delivered but I never got it",
        "marked as delivered but not received",
        "the parcel was opened",
        "only half of my order arrived",
        "wrong size was sent",
        "the product is faulty",
        "it's broken",
        "package delivered to the wrong house",
        "the glass was shattered",
        "missing item",
        "I received someone else's order",
        "the tracking says delivered but nothing is here",
        "one of the items is not in the box",
        "the screen is cracked",
        "it arrived wet and damaged",
        "you sent the wrong colour",
        "parcel was stolen from my doorstep",
        "item doesn't work",
        "I got the wrong product",
        "the delivery photo is not my house",
    ],
    "invoice_request": [
        "can I get an invoice",
        "send me the invoice",
        "I need a receipt",
        "where can I find my invoice",
        "resend the invoice please",
        "I need a VAT invoice",
        "invoice for my order",
        "can you email me the receipt",
        "I didn't receive the invoice",
        "I need a copy of the bill",
        "download invoice",
        "need invoice for my company",
        "please send a receipt for my purchase",
        "can I have the invoice with my company name",
        "tax invoice please",
        "proof of purchase please",
    ],
    "talk_to_human": [
        "I want to talk to a human",
        "can I speak to a person",
        "agent please",
        "connect me to customer service",
        "real person please",
        "let me talk to someone",
        "human",
        "operator",
        "I don't want a bot",
        "put me through to an agent",
        "can someone call me",
        "speak to a representative",
        "I need a real human",
        "transfer me to support",
        "is there a person I can talk to",
        "stop the bot, get me a human",
        "talk to staff",
        "live agent",
        "i want to speak with your team",
        "can I chat with a real person",
    ],
    "complaint": [
        "this is unacceptable",
        "worst service ever",
        "I'm very disappointed",
        "I want to make a complaint",
        "your delivery service is terrible",
        "I am furious",
        "this is ridiculous, third time it's late",
        "I'm never ordering from you again",
        "complaint about the driver",
        "the courier was rude",
        "you people are useless",
        "I'm extremely unhappy with my order",
        "I want to file a formal complaint",
        "this is a joke",
        "awful experience",
        "the driver threw my parcel over the fence",
        "I've been waiting forever and nobody helps",
        "what a shambles",
        "very poor service",
        "I'll be leaving a bad review",
        "absolutely disgusting service",
        "I am sick of this",
    ],
    "greeting": [
        "hi",
        "hello",
        "hey",
        "good morning",
        "good afternoon",
        "hi there",
        "hello, anyone there?",
        "hey there",
        "good evening",
        "yo",
        "hiya",
        "greetings",
        "howdy",
        "morning",
        "hello team",
        "hi, I have a question",
        "hey, can you help me",
    ],
    "thanks": [
        "thanks",
        "thank you",
        "thanks a lot",
        "cheers",
        "thank you so much",
        "great, thanks",
        "perfect, thank you",
        "that's helpful, thanks",
        "many thanks",
        "thx",
        "ty",
        "brilliant, cheers",
        "awesome thanks",
        "thanks for your help",
        "much appreciated",
        "ok thanks",
        "lovely, thank you",
    ],
    "goodbye": [
        "bye",
        "goodbye",
        "see you",
        "that's all",
        "nothing else",
        "bye bye",
        "have a nice day",
        "that's everything",
        "no that's it",
        "ok bye",
        "all good now, bye",
        "see ya",
        "take care",
        "I'm done",
        "that's all for now",
        "nope, that's all",
        "no more questions",
    ],
    "out_of_scope": [
        "what's the weather like today",
        "tell me a joke",
        "who won the football last night",
        "write me a poem",
        "what is the capital of france",
        "how do I bake a cake",
        "recommend a good movie",
        "what's 2 plus 2",
        "do you have these shoes in blue",
        "what are your opening hours",
        "are you hiring",
        "can I pay with bitcoin",
        "do you sell gift cards",
        "what's your favourite colour",
        "are you a robot",
        "how old are you",
        "sing me a song",
        "what is the meaning of life",
        "book me a flight to paris",
        "how do I reset my password",
        "do you have a discount code",
        "is this product vegan",
        "what size should I buy",
        "can you recommend a dress for a wedding",
        "translate hello into spanish",
        "what's the time in tokyo",
        "help me with my homework",
        "how to fix my car",
        "play some music",
        "what's the stock price of apple",
        "where is your head office",
        "can I work for you",
        "do you ship to mars",
        "will the jacket be restocked",
        "what material is this made of",
        "how do I unsubscribe from the newsletter",
        "can I change my account email",
        "who is the ceo",
        "is there a sale on",
        "what's the best pizza in town",
        "how tall is mount everest",
        "can you order me a taxi",
        "tell me about your privacy policy",
        "do you price match",
        "my cat is sick",
        "I love you",
        "what's your name",
        "how do I delete my account",
        "what is machine learning",
        "how do you say thank you in german",
        "where can I buy a bike",
        "do you do student discount",
        "is the store open on sunday",
        "how many calories in a banana",
        "can you wrap it as a gift",
        "do you have a loyalty programme",
        "set an alarm for 7",
        "are these shoes good for running",
        "which laptop should I buy",
        "I want to become a supplier",
        "asdfghjkl",
        "lorem ipsum dolor",
        "blah blah",
        "banana",
        "what do you think about politics",
        "write python code to sort a list",
        "what's the news today",
        "how do I get to the station",
    ],
}

PHRASES["track_order"] += [
    "I ordered days ago and heard nothing",
    "no word on my order since I placed it",
    "nothing has arrived yet",
    "has anything happened with my order",
    "the parcel hasn't moved",
    "my order vanished",
    "is my order lost in the post",
    "what's going on with my parcel",
    "can you find my package",
    "I've been waiting ages for my order",
    "my stuff still hasn't come",
    "any progress on my delivery",
    "has my order been posted",
    "where has my order got to",
    "has my parcel gone out",
]
PHRASES["delivery_eta"] += [
    "when's it arriving",
    "what day will it come",
    "roughly when will it get here",
    "will the courier come in the morning",
    "will it get here before my holiday",
    "how long does delivery take",
    "can I expect it on monday",
    "is it due tomorrow",
    "when do you think it will turn up",
    "at what time will it be delivered",
    "delivery estimate",
]
PHRASES["reschedule_delivery"] += [
    "i'm not in on friday, can you come on saturday",
    "can you deliver another day",
    "bring it on monday instead",
    "change the delivery to next week",
    "could you come back another time",
    "I'll be out, please reschedule",
    "deliver later",
    "move it to the morning slot",
    "can you try again tomorrow",
]
PHRASES["change_delivery_address"] += [
    "leave it next door",
    "give it to my neighbour at number 5",
    "leave it in the shed",
    "put it in the safe place",
    "safe place behind the gate",
    "send to a parcel locker",
    "collect from a pickup point",
    "send it to a collection point",
    "I want to collect it myself",
    "change shipping address",
    "deliver to my new home",
    "the address on my order is wrong",
    "ship it to my mum's house",
    "leave it under the doormat",
    "send it to my workplace",
]
PHRASES["cancel_order"] += [
    "cancel it please",
    "I don't need it anymore",
    "please stop the order",
    "cancel my purchase before dispatch",
    "i ordered the wrong thing, cancel it",
    "I placed a duplicate order, cancel one",
    "too late to cancel?",
    "can you cancel the order i made",
]
PHRASES["start_return"] += [
    "swap these for a bigger size",
    "I'd like an exchange",
    "exchange it for a size 9",
    "can I send it back",
    "I want to send my order back",
    "return the boots",
    "how do returns work",
    "I need to return something",
    "the trousers are too tight",
    "it's the wrong fit, return please",
    "returns label",
]
PHRASES["refund_status"] += [
    "when do I get my money back",
    "when is my refund coming",
    "is my money on its way back",
    "has my refund gone through",
    "I sent it back, where's my refund",
    "you got the return, so where is my money",
    "the refund hasn't shown up on my card",
    "no refund yet",
    "did you process my return",
    "my money still hasn't come back",
    "have you received my returned parcel",
    "has the warehouse got my return",
]
PHRASES["report_problem"] += [
    "it arrived smashed",
    "the vase came broken",
    "the item is cracked",
    "the product is dented",
    "it was damaged in transit",
    "something is missing from the box",
    "I didn't get all my items",
    "there's an item missing",
    "this is not what I ordered",
    "I got a different product",
    "you sent the wrong size",
    "they left my parcel at the wrong address",
    "the courier delivered to someone else",
    "it says delivered but I have nothing",
    "shows as delivered but no parcel",
    "my parcel was stolen",
    "somebody took my package from the porch",
    "the item doesn't work",
    "it won't turn on",
    "the zip is broken",
    "it's defective",
    "the parcel arrived open and items were gone",
    "the lid was snapped",
    "received damaged goods",
    "it came scratched",
    "I never received it but it says delivered",
    "possible fraud on my order",
    "I didn't place this order, fraud",
]
PHRASES["invoice_request"] += [
    "send me the bill",
    "I need the bill for my order",
    "copy of the invoice please",
    "my accountant needs an invoice",
    "company invoice please",
    "receipt for expenses",
    "invoice with VAT number",
    "I never got a receipt",
    "where is my invoice",
]
PHRASES["talk_to_human"] += [
    "can I speak to someone",
    "I need a person",
    "someone from customer care please",
    "I want to speak to a manager",
    "can a human help me",
    "talk to a real agent",
    "not a bot please",
    "I'd like to talk to an advisor",
    "escalate to a human",
]
PHRASES["complaint"] += [
    "I'm fed up with you",
    "you've ruined my day",
    "this is outrageous",
    "I'm so angry",
    "this is shocking",
    "pathetic service",
    "I'm really upset",
    "you lot are hopeless",
    "totally unacceptable",
    "this is a disgrace",
    "I am appalled",
    "you should be ashamed",
    "I'm losing my patience",
    "disgraceful",
    "rubbish service",
    "I'm so frustrated with this company",
    "worst experience ever",
    "you wasted my time",
    "I want compensation",
    "I'm going to report you",
    "incompetent",
    "horrible service",
]
PHRASES["greeting"] += [
    "hi, anyone there",
    "hello hello",
    "morning all",
    "hi again",
    "hello, is this support",
    "helo",
]
PHRASES["thanks"] += [
    "appreciate your help",
    "ta very much",
    "nice one",
    "cheers for that",
    "thank you kindly",
    "that's great, thanks",
    "super, thanks",
    "thanks mate",
    "merci",
    "danke",
]
PHRASES["goodbye"] += [
    "catch you later",
    "goodnight",
    "talk soon",
    "i'm all set",
    "that's it",
    "no thanks, bye",
    "ok, that's all",
    "all sorted, bye",
]
PHRASES["out_of_scope"] += [
    "how much is a flight to rome",
    "book a return flight",
    "what day is it today",
    "will it snow tomorrow",
    "do you take phone orders",
    "remind me to call my mother",
    "call my dad",
    "what's the date today",
    "order me a pizza",
    "send flowers to my wife",
    "what time is it",
    "can I return to the homepage",
    "how do I track my fitness",
    "what's the score",
    "how to return a library book",
    "do you have a shop near me",
    "which size is right for me",
    "what colours does it come in",
    "can I change my password",
    "how do I log in",
    "what's your address",
    "what is your email address",
    "do you have an app",
    "is this item in stock",
    "when will the new collection launch",
    "can you help me with my essay",
    "what's the exchange rate for dollars",
    "where is the nearest cash machine",
    "how do I cancel my gym membership",
    "how do I cancel netflix",
    "can you deliver my groceries",
    "track my fitbit steps",
    "tell me about dinosaurs",
    "hahaha",
    "ok",
    "?",
    "test",
    "can you keep a secret",
    "what can you do",
]

POLITE = [
    "",
    "",
    "",
    "hi, ",
    "hello, ",
    "please ",
    "could you help? ",
    "excuse me, ",
    "good morning, ",
    "sorry to bother you, ",
    "quick question: ",
    "hey ",
    "hi there! ",
]
ANGRY = ["", "", "", "", "seriously, ", "again!! ", "for the third time, ", "ugh ", "come on, "]
SUFFIX = ["", "", "", "", " please", " thanks", " thank you", "?", "!!", " asap", " pls", "...", " :)"]
ORDER_SUFFIX = [
    "",
    "",
    "",
    " order #{n}",
    " for order {n}",
    " (order {n})",
    " - {n}",
    " my order number is {n}",
    " ref DS-{n}",
    " order no. {n}",
]
NO_ORDER = {"greeting", "thanks", "goodbye", "talk_to_human", "out_of_scope"}


def typo(text: str, rng: random.Random) -> str:
    """One realistic slip: a dropped, doubled or swapped letter."""
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if len(letters) < 4:
        return text
    i = rng.choice(letters[1:-1])
    kind = rng.randrange(3)
    if kind == 0:
        return text[:i] + text[i + 1 :]
    if kind == 1:
        return text[:i] + text[i] + text[i:]
    return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]


def vary(phrase: str, intent: str, rng: random.Random) -> str:
    text = rng.choice(POLITE) + phrase
    if intent in ("complaint", "track_order", "refund_status", "report_problem"):
        text = rng.choice(ANGRY) + text
    if intent not in NO_ORDER and rng.random() < 0.35:
        text += rng.choice(ORDER_SUFFIX).format(n=rng.randrange(10_000, 9_999_999))
    text += rng.choice(SUFFIX)
    if rng.random() < 0.25:
        text = typo(text, rng)
    if rng.random() < 0.2:
        text = text.lower()
    elif rng.random() < 0.05:
        text = text.upper()
    return text.strip()


def _key(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


HELD_OUT_FILES = ("test.csv", "test_second.csv", "test_de_fr.csv")


def held_out_texts() -> set[str]:
    keys: set[str] = set()
    for name in HELD_OUT_FILES:
        with (HERE / name).open(newline="", encoding="utf-8") as fh:
            keys |= {_key(row["text"]) for row in csv.DictReader(fh)}
    return keys


def vary_language(phrase: str, intent: str, lang: str, rng: random.Random) -> str:
    """Like vary(), with the German or French openers, order references and endings."""
    _, polite, angry, suffix, order_suffix = LANGUAGES[lang]
    text = rng.choice(polite) + phrase
    if intent in ("complaint", "track_order", "refund_status", "report_problem"):
        text = rng.choice(angry) + text
    if intent not in NO_ORDER and rng.random() < 0.35:
        text += rng.choice(order_suffix).format(n=rng.randrange(10_000, 9_999_999))
    text += rng.choice(suffix)
    if rng.random() < 0.25:
        text = typo(text, rng)
    if rng.random() < 0.3:
        text = text.lower()
    return text.strip()


def generate(per_phrase: int = 5, seed: int = 7, lang_per_phrase: int = 5) -> list[tuple[str, str]]:
    """Every phrase and its variants, minus anything that matches a held-out test sentence."""
    rng = random.Random(seed)
    held_out = held_out_texts()
    rows: set[tuple[str, str]] = set()
    for intent, phrases in PHRASES.items():
        for phrase in phrases:
            rows.add((phrase, intent))
            for _ in range(per_phrase):
                rows.add((vary(phrase, intent, rng), intent))
    lang_rng = random.Random(seed + 1)  # separate stream: the English rows stay as they were
    for lang, (phrases_by_intent, *_) in LANGUAGES.items():
        for intent, phrases in phrases_by_intent.items():
            for phrase in phrases:
                rows.add((phrase, intent))
                for _ in range(lang_per_phrase):
                    rows.add((vary_language(phrase, intent, lang, lang_rng), intent))
    return sorted((r for r in rows if _key(r[0]) not in held_out), key=lambda r: (r[1], r[0]))


def main() -> None:
    rows = generate()
    with (HERE / "train.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "intent"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {HERE / 'train.csv'}")


if __name__ == "__main__":
    main()
