"""The ``korean`` corpus: generated Korean sentences with correct word spacing.

The demo of ``charlm tag train korean --task spaces``: templated sentences over a small
vocabulary (people, places, things, times, adverbs, adjectives, about 40 verbs with their
conjugated forms written out), with the particles chosen by the noun's final consonant
(은/는, 이/가, 을/를, 과/와, 으로/로) and the spacing rules a tagger has to learn: particles
and endings stay on their word, dependent nouns and auxiliaries are words of their own
(``읽을 수 있었다``, ``갈 것이다``, ``써 주었다``, ``먹고 싶었다``, ``보고 있었다``), as do
counters after a number (``사과 세 개를``). Many of the syllables that end a word also start
or sit inside others (는: ``할머니는`` / ``읽는다``; 가: ``친구가`` / ``가방``; 고: ``읽고`` /
``고양이``), so whether a space follows often shows only in the next character: what a
bidirectional tagger sees and a forward one does not.

Lines are paragraphs of 2..5 sentences. Deterministic given ``size`` (characters, at least)
and ``seed``; another seed gives other sentences from the same vocabulary (held-out text).
"""

from __future__ import annotations

import random

from charlm.errors import UsageError

PEOPLE = ("할머니 할아버지 어머니 아버지 동생 언니 친구 선생님 아이들 어부 등대지기 우체부 이웃 학생 의사 "
          "요리사 농부 아주머니 고양이 강아지 기사 가수 화가 사장님 소년 소녀 손님 주인 손자 아저씨 그녀 "
          "형 누나 삼촌 이모 경찰관 간호사 목수 선장 할머니들 사람들 갈매기").split()
PLACES = ("시장 학교 도서관 공원 바닷가 골목 부엌 마당 강가 산길 마을 기차역 정류장 빵집 병원 교실 "
          "들판 숲 항구 가게 식당 다리 호숫가 창고 광장 정원 서점 언덕 호수 창가 마루 지붕 길가 "
          "산꼭대기 시계탑 바다 우체국 운동장 놀이터 시골 도시 섬 계곡 약국 극장 방 거실").split()
THINGS = ("책 편지 사과 감자 양파 우산 가방 자전거 화분 그물 김치 장작 빵 신문 사진 그림 모자 꽃 "
          "국수 연필 공책 바구니 주전자 열쇠 고구마 수박 가위 장갑 이불 달력 모래 떡국 토마토 고추 "
          "빨래 등불 노래 이야기 시계 물 옷 구두 창문 문 의자 공 배추 우유 접시 라디오 피아노 "
          "안경 거울 지도 상자 선물 인형 밥 차 커피 과자 목도리 양말 빗자루 도시락").split()
TIMES = ("아침에 저녁에 밤에 오늘 어제 주말에 겨울에 여름에 새벽에 점심에 그날 봄마다 설날에 가을에 "
         "봄에 오후에 방학에 내일 주말마다 해마다").split()
ADVERBS = ("천천히 빨리 조용히 다시 자주 함께 벌써 아직 매일 가끔 오래 열심히 항상 조금 몰래 얼른 "
           "서로 모두 가만히 처음으로 드디어 살짝 억지로").split()
ADJ_MOD = ("작은 커다란 따뜻한 오래된 새로운 예쁜 낡은 무거운 가벼운 하얀 파란 빨간 둥근 깨끗한 "
           "어두운 조용한 시원한 맛있는 귀여운 이상한 노란 까만 뜨거운 차가운").split()
ADJ_PRED = ("조용했다 시원했다 따뜻했다 복잡했다 깨끗했다 어두웠다 밝았다 붐볐다 한가했다 추웠다 "
            "고요했다 더웠다 넓었다 좁았다 아름다웠다 시끄러웠다").split()
INTENS = "아주 무척 꽤 정말 너무 조금".split()
NUMBERS = "한 두 세 네 다섯 여섯".split()
COUNTERS = "개 권 장 잔 자루 봉지".split()

# verb: past, present, "and" (-고), "while" (-(으)면서), future modifier (-(으)ㄹ), infinitive (-아/어)
TRANSITIVE = [v.split() for v in (
    "읽었다 읽는다 읽고 읽으면서 읽을 읽어", "먹었다 먹는다 먹고 먹으면서 먹을 먹어",
    "샀다 산다 사고 사면서 살 사", "보았다 본다 보고 보면서 볼 봐",
    "만들었다 만든다 만들고 만들면서 만들 만들어", "씻었다 씻는다 씻고 씻으면서 씻을 씻어",
    "고쳤다 고친다 고치고 고치면서 고칠 고쳐", "썼다 쓴다 쓰고 쓰면서 쓸 써",
    "찾았다 찾는다 찾고 찾으면서 찾을 찾아", "그렸다 그린다 그리고 그리면서 그릴 그려",
    "팔았다 판다 팔고 팔면서 팔 팔아", "닦았다 닦는다 닦고 닦으면서 닦을 닦아",
    "기다렸다 기다린다 기다리고 기다리면서 기다릴 기다려", "받았다 받는다 받고 받으면서 받을 받아",
    "챙겼다 챙긴다 챙기고 챙기면서 챙길 챙겨", "열었다 연다 열고 열면서 열 열어",
    "빌렸다 빌린다 빌리고 빌리면서 빌릴 빌려", "심었다 심는다 심고 심으면서 심을 심어",
    "골랐다 고른다 고르고 고르면서 고를 골라", "접었다 접는다 접고 접으면서 접을 접어",
    "숨겼다 숨긴다 숨기고 숨기면서 숨길 숨겨", "가져왔다 가져온다 가져오고 가져오면서 가져올 가져와",
    "들었다 든다 들고 들면서 들 들어", "정리했다 정리한다 정리하고 정리하면서 정리할 정리해",
    "탔다 탄다 타고 타면서 탈 타", "남겼다 남긴다 남기고 남기면서 남길 남겨", "쌓았다 쌓는다 쌓고 쌓으면서 쌓을 쌓아",
    "적었다 적는다 적고 적으면서 적을 적어", "바라보았다 바라본다 바라보고 바라보면서 바라볼 바라봐",
    "전했다 전한다 전하고 전하면서 전할 전해", "나누었다 나눈다 나누고 나누면서 나눌 나눠",
    "불렀다 부른다 부르고 부르면서 부를 불러", "들었다 듣는다 듣고 들으면서 들을 들어",
    "입었다 입는다 입고 입으면서 입을 입어", "버렸다 버린다 버리고 버리면서 버릴 버려",
    "던졌다 던진다 던지고 던지면서 던질 던져", "말렸다 말린다 말리고 말리면서 말릴 말려",
    "보냈다 보낸다 보내고 보내면서 보낼 보내", "잡았다 잡는다 잡고 잡으면서 잡을 잡아",
)]
MOTION = [v.split() for v in (  # with a place + 에 / (으)로
    "갔다 간다 가고 가면서 갈 가", "왔다 온다 오고 오면서 올 와", "돌아갔다 돌아간다 돌아가고 돌아가면서 돌아갈 돌아가",
    "달려갔다 달려간다 달려가고 달려가면서 달려갈 달려가", "올라갔다 올라간다 올라가고 올라가면서 올라갈 올라가",
)]
INTRANSITIVE = [v.split() for v in (  # with a place + 에서
    "걸었다 걷는다 걷고 걸으면서 걸을 걸어", "놀았다 논다 놀고 놀면서 놀 놀아", "쉬었다 쉰다 쉬고 쉬면서 쉴 쉬어",
    "일했다 일한다 일하고 일하면서 일할 일해", "공부했다 공부한다 공부하고 공부하면서 공부할 공부해",
    "노래했다 노래한다 노래하고 노래하면서 노래할 노래해", "잤다 잔다 자고 자면서 잘 자",
    "기다렸다 기다린다 기다리고 기다리면서 기다릴 기다려", "웃었다 웃는다 웃고 웃으면서 웃을 웃어",
    "울었다 운다 울고 울면서 울 울어", "앉았다 앉는다 앉고 앉으면서 앉을 앉아", "살았다 산다 살고 살면서 살 살아",
    "뛰어놀았다 뛰어논다 뛰어놀고 뛰어놀면서 뛰어놀 뛰어놀아", "춤추었다 춤춘다 춤추고 춤추면서 춤출 춤춰",
)]
PAST, PRESENT, AND, WHILE, FUT, INF = range(6)


def final(word: str) -> int:
    """The final consonant index of the word's last syllable (0 = none, 8 = ㄹ)."""
    c = ord(word[-1]) - 0xAC00
    return c % 28 if 0 <= c < 11172 else 0


def particle(word: str, kind: str) -> str:
    """``word`` with the particle of ``kind``, in the form its final consonant takes."""
    f = final(word)
    forms = {"topic": ("은", "는"), "subject": ("이", "가"), "object": ("을", "를"), "with": ("과", "와"),
             "to": ("으로", "로")}
    if kind in forms:
        with_final, without = forms[kind]
        return word + (with_final if f and not (kind == "to" and f == 8) else without)
    return word + kind  # 에, 에서, 에게, 의, 도, 까지: one form


def _with_final(syllable: str, jong: int) -> str:
    c = ord(syllable) - 0xAC00
    return chr(0xAC00 + c - c % 28 + jong)


def past_mod(verb) -> str:
    """The past modifier (-(으)ㄴ: 읽은, 산, 만든) from the future one (-(으)ㄹ: 읽을, 살, 만들)."""
    fut = verb[FUT]
    return fut[:-1] + ("은" if fut.endswith("을") else _with_final(fut[-1], 4))


def stem(verb) -> str:
    return verb[AND][:-1]  # -고 off: 읽, 사, 만들


def _sentence(r: random.Random) -> str:
    P, L, T = (lambda: r.choice(PEOPLE)), (lambda: r.choice(PLACES)), (lambda: r.choice(THINGS))
    tv, mv, iv = r.choice(TRANSITIVE), r.choice(MOTION), r.choice(INTRANSITIVE)
    obj = particle(T(), "object") if r.random() < 0.7 else f"{r.choice(ADJ_MOD)} {particle(T(), 'object')}"
    who = particle(P(), r.choice(("topic", "subject")))
    time = [r.choice(TIMES)] if r.random() < 0.4 else []
    adv = [r.choice(ADVERBS)] if r.random() < 0.4 else []
    k = r.randrange(20)
    if k == 0:
        words = time + [who, particle(L(), "에서"), obj] + adv + [tv[PAST]]
    elif k == 1:
        words = [who, obj, tv[AND], particle(L(), r.choice(("to", "에"))), mv[PAST]]
    elif k == 2:
        words = [who, particle(L(), "에서"), obj, tv[WHILE], particle(P(), "object"), "기다렸다"]
    elif k == 3:
        words = time + [who, obj, tv[FUT], r.choice(("수 있었다", "수 없었다", "것이다", "것 같았다"))]
    elif k == 4:
        words = [who, particle(P(), "에게"), obj] + adv + [tv[INF], r.choice(("주었다", "보았다", "주셨다"))]
    elif k == 5:
        words = time + [particle(L(), "topic"), r.choice(INTENS), r.choice(ADJ_PRED)]
    elif k == 6:
        words = [who, obj, tv[AND], r.choice(("싶었다", "있었다", "싶어 했다"))]
    elif k == 7:
        words = [particle(P(), "의"), particle(T(), "topic"), particle(L(), "에"), r.choice(("있었다", "없었다"))]
    elif k == 8:
        words = [who, T(), r.choice(NUMBERS), particle(r.choice(COUNTERS), "object"), tv[PAST]]
    elif k == 9:
        words = time + [particle(P(), "topic"), particle(P(), "with"), "함께", particle(L(), "에서"), iv[PAST]]
    elif k == 10:
        words = [who, particle(L(), "까지"), mv[AND], particle(T(), "도"), tv[PRESENT]]
    elif k == 11:
        words = adv + [particle(P(), "topic"), particle(L(), "에서"), iv[AND], r.choice(MOTION)[PAST]]
    elif k == 12:
        words = [who, obj, stem(tv) + "자", particle(P(), "subject"), iv[PAST]]
    elif k == 13:
        words = time + [past_mod(tv), particle(T(), "topic"), particle(L(), "에"), "있었다"]
    elif k == 14:
        words = [who, obj, tv[INF] + "서", particle(L(), "에서"), iv[PAST]]
    elif k == 15:
        words = [particle(P(), "subject"), obj, tv[FUT], "때마다", particle(P(), "topic"), iv[PAST]]
    elif k == 16:
        t2 = r.choice(TRANSITIVE)
        words = [who, obj, stem(tv) + "지만", particle(P(), "topic"), particle(T(), "object"), t2[PAST]]
    elif k == 17:
        t2 = r.choice(TRANSITIVE)
        words = [who, obj, stem(tv) + "기", "전에", particle(T(), "object"), t2[PAST]]
    elif k == 18:
        words = [who, obj, past_mod(tv), "뒤에", particle(L(), "to"), mv[PAST]]
    else:
        words = time + [who, obj, tv[WHILE].replace("면서", "며")] + adv + [iv[PAST]]
    return " ".join(words) + "."


def generate(size: int = 200_000, seed: int = 0, notice=None) -> str:
    """Lines of 2..5 generated sentences, at least ``size`` characters in all."""
    if size < 1:
        raise UsageError("korean: size must be >= 1")
    r = random.Random(seed)
    lines, n = [], 0
    while n < size:
        line = " ".join(_sentence(r) for _ in range(r.randint(2, 5))) + "\n"
        lines.append(line)
        n += len(line)
    return "".join(lines)
