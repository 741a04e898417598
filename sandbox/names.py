"""Chinese data for the generated province: people's names, places, department templates and titles.

Everything here is plain data plus a few tiny pickers that take an explicit `random.Random`, so the generator
(`sandbox.province`) and the change simulator (`sandbox.changes`) draw names the same way and stay
deterministic. Place names and administrative division codes are the real ones (Zhejiang's 11 cities and 90
county-level units; Wufeng county in Hubei for the `county` scale); township and village names are plausible
inventions built from common place-name stems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

# ---------------------------------------------------------------------------------------------------------------
# People
# ---------------------------------------------------------------------------------------------------------------

# (surname, pinyin, relative frequency ‰) — roughly the national ranking, nudged for Zhejiang (陈, 吴, 徐, 俞 …).
SURNAMES: tuple[tuple[str, str, float], ...] = (
    ("王", "wang", 71), ("李", "li", 68), ("张", "zhang", 64), ("陈", "chen", 62), ("刘", "liu", 50),
    ("杨", "yang", 30), ("黄", "huang", 22), ("吴", "wu", 24), ("赵", "zhao", 18), ("周", "zhou", 20),
    ("徐", "xu", 18), ("孙", "sun", 12), ("马", "ma", 10), ("朱", "zhu", 13), ("胡", "hu", 12),
    ("郭", "guo", 9), ("何", "he", 10), ("林", "lin", 12), ("罗", "luo", 7), ("高", "gao", 8),
    ("郑", "zheng", 10), ("梁", "liang", 6), ("谢", "xie", 6), ("宋", "song", 5), ("唐", "tang", 5),
    ("许", "xu", 6), ("韩", "han", 4), ("冯", "feng", 4), ("邓", "deng", 4), ("曹", "cao", 4),
    ("彭", "peng", 4), ("曾", "zeng", 3), ("肖", "xiao", 3), ("田", "tian", 3), ("董", "dong", 4),
    ("袁", "yuan", 3), ("潘", "pan", 5), ("于", "yu", 3), ("蒋", "jiang", 5), ("蔡", "cai", 4),
    ("余", "yu", 4), ("杜", "du", 3), ("叶", "ye", 6), ("程", "cheng", 3), ("苏", "su", 3),
    ("魏", "wei", 3), ("吕", "lv", 3), ("丁", "ding", 3), ("任", "ren", 3), ("沈", "shen", 6),
    ("姚", "yao", 3), ("卢", "lu", 3), ("姜", "jiang", 2), ("崔", "cui", 2), ("钟", "zhong", 2),
    ("谭", "tan", 2), ("陆", "lu", 4), ("汪", "wang", 4), ("范", "fan", 2), ("金", "jin", 4),
    ("石", "shi", 2), ("廖", "liao", 2), ("贾", "jia", 2), ("夏", "xia", 2), ("韦", "wei", 1),
    ("付", "fu", 2), ("方", "fang", 4), ("白", "bai", 1), ("邹", "zou", 2), ("孟", "meng", 1),
    ("熊", "xiong", 1), ("秦", "qin", 1), ("邱", "qiu", 2), ("江", "jiang", 2), ("尹", "yin", 1),
    ("薛", "xue", 1), ("闫", "yan", 1), ("段", "duan", 1), ("雷", "lei", 1), ("侯", "hou", 1),
    ("龙", "long", 1), ("史", "shi", 1), ("陶", "tao", 1), ("黎", "li", 1), ("贺", "he", 1),
    ("顾", "gu", 2), ("毛", "mao", 2), ("郝", "hao", 1), ("龚", "gong", 1), ("邵", "shao", 2),
    ("万", "wan", 1), ("钱", "qian", 2), ("严", "yan", 1), ("武", "wu", 1), ("戴", "dai", 1),
    ("孔", "kong", 1), ("汤", "tang", 1), ("楼", "lou", 2), ("应", "ying", 2), ("俞", "yu", 2),
    ("虞", "yu", 1), ("章", "zhang", 2), ("葛", "ge", 1), ("裘", "qiu", 0.5), ("柳", "liu", 1),
    ("童", "tong", 1), ("项", "xiang", 1), ("欧阳", "ouyang", 0.3), ("诸葛", "zhuge", 0.1), ("上官", "shangguan", 0.1),
)  # fmt: skip

# Given-name characters with pinyin. Split by the sex they are mostly given to; both lists are used for both.
GIVEN_MALE: tuple[tuple[str, str], ...] = (
    ("伟", "wei"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("勇", "yong"), ("杰", "jie"), ("涛", "tao"),
    ("斌", "bin"), ("超", "chao"), ("明", "ming"), ("刚", "gang"), ("平", "ping"), ("辉", "hui"), ("鹏", "peng"),
    ("华", "hua"), ("飞", "fei"), ("鑫", "xin"), ("波", "bo"), ("宇", "yu"), ("浩", "hao"), ("凯", "kai"),
    ("健", "jian"), ("俊", "jun"), ("帆", "fan"), ("旭", "xu"), ("宁", "ning"), ("龙", "long"), ("林", "lin"),
    ("阳", "yang"), ("建", "jian"), ("国", "guo"), ("文", "wen"), ("志", "zhi"), ("海", "hai"), ("永", "yong"),
    ("东", "dong"), ("峰", "feng"), ("晨", "chen"), ("博", "bo"), ("成", "cheng"), ("立", "li"), ("新", "xin"),
    ("达", "da"), ("亮", "liang"), ("德", "de"), ("正", "zheng"), ("荣", "rong"), ("卫", "wei"), ("学", "xue"),
    ("兵", "bing"), ("良", "liang"), ("晓", "xiao"), ("一", "yi"), ("子", "zi"), ("天", "tian"), ("嘉", "jia"),
    ("家", "jia"), ("振", "zhen"), ("忠", "zhong"), ("毅", "yi"), ("航", "hang"), ("睿", "rui"), ("泽", "ze"),
    ("轩", "xuan"), ("昊", "hao"), ("然", "ran"), ("铭", "ming"), ("哲", "zhe"), ("彬", "bin"), ("剑", "jian"),
    ("松", "song"), ("洋", "yang"), ("金", "jin"), ("根", "gen"), ("福", "fu"), ("生", "sheng"), ("庆", "qing"),
    ("祥", "xiang"), ("元", "yuan"), ("益", "yi"), ("江", "jiang"), ("民", "min"), ("晖", "hui"), ("炜", "wei"),
    ("骏", "jun"), ("俊", "jun"), ("锋", "feng"), ("亚", "ya"), ("建", "jian"), ("斐", "fei"), ("维", "wei"),
)  # fmt: skip
GIVEN_FEMALE: tuple[tuple[str, str], ...] = (
    ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("艳", "yan"), ("娟", "juan"),
    ("霞", "xia"), ("燕", "yan"), ("秀", "xiu"), ("英", "ying"), ("玲", "ling"), ("萍", "ping"), ("红", "hong"),
    ("婷", "ting"), ("雪", "xue"), ("琳", "lin"), ("慧", "hui"), ("莉", "li"), ("倩", "qian"), ("颖", "ying"),
    ("洁", "jie"), ("佳", "jia"), ("琴", "qin"), ("梅", "mei"), ("兰", "lan"), ("云", "yun"), ("丹", "dan"),
    ("晶", "jing"), ("蕾", "lei"), ("薇", "wei"), ("瑶", "yao"), ("怡", "yi"), ("欣", "xin"), ("悦", "yue"),
    ("琪", "qi"), ("露", "lu"), ("璐", "lu"), ("雯", "wen"), ("楠", "nan"), ("玉", "yu"), ("凤", "feng"),
    ("珍", "zhen"), ("美", "mei"), ("月", "yue"), ("晓", "xiao"), ("春", "chun"), ("彩", "cai"), ("思", "si"),
    ("雨", "yu"), ("梦", "meng"), ("诗", "shi"), ("佩", "pei"), ("蓉", "rong"), ("青", "qing"), ("清", "qing"),
    ("素", "su"), ("妍", "yan"), ("婧", "jing"), ("菲", "fei"), ("琼", "qiong"), ("莹", "ying"), ("虹", "hong"),
    ("岚", "lan"), ("萱", "xuan"), ("涵", "han"), ("琦", "qi"), ("媛", "yuan"), ("姗", "shan"), ("瑜", "yu"),
    ("茜", "qian"), ("文", "wen"), ("晴", "qing"), ("莎", "sha"), ("亚", "ya"), ("海", "hai"),
)  # fmt: skip

PINYIN: dict[str, str] = {c: p for c, p, _ in SURNAMES} | dict(GIVEN_MALE) | dict(GIVEN_FEMALE)

_SURNAME_CHARS = [s for s, _, _ in SURNAMES]
_SURNAME_CUM = list(accumulate(w for _, _, w in SURNAMES))
_MALE_CHARS = [c for c, _ in GIVEN_MALE]
_FEMALE_CHARS = [c for c, _ in GIVEN_FEMALE]


def surname(rng: random.Random) -> str:
    """A surname drawn by real-life frequency."""
    return rng.choices(_SURNAME_CHARS, cum_weights=_SURNAME_CUM)[0]


def given_name(rng: random.Random, female: bool) -> str:
    """One (≈20%) or two given-name characters; a mix of both lists as in real life."""
    main, other = (_FEMALE_CHARS, _MALE_CHARS) if female else (_MALE_CHARS, _FEMALE_CHARS)
    first = rng.choice(main if rng.random() < 0.85 else other)
    if rng.random() < 0.2:
        return first
    return first + rng.choice(main)


def person_name(rng: random.Random, female: bool) -> str:
    """A full Chinese name: surname + given name (repeats across a province are realistic and expected)."""
    return surname(rng) + given_name(rng, female)


def name_pinyin(name: str) -> str:
    """Toneless pinyin of a generated name, for e-mail local parts (compound surnames are matched first)."""
    for compound in ("欧阳", "诸葛", "上官"):
        if name.startswith(compound):
            return PINYIN[compound] + "".join(PINYIN.get(c, "x") for c in name[2:])
    return "".join(PINYIN.get(c, "x") for c in name)


# Real mobile prefixes (China Mobile / Unicom / Telecom), weighted towards the older, commoner ones.
MOBILE_PREFIXES: tuple[str, ...] = (
    "130", "131", "132", "133", "134", "135", "135", "136", "137", "138", "138", "139", "139",
    "150", "151", "152", "153", "155", "156", "157", "158", "158", "159", "159", "166", "173", "175",
    "176", "177", "178", "180", "181", "182", "183", "184", "185", "186", "187", "188", "189", "191",
    "193", "195", "198", "199",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Places
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class County:
    name: str  # full official name, e.g. "桐庐县", "景宁畲族自治县"
    code: str  # 6-digit administrative division code
    core: bool = False  # core urban district: served by a city 医联体, so no 医共体 of its own

    @property
    def short(self) -> str:
        """The everyday short form used in hospital names ("景宁县" for "景宁畲族自治县")."""
        if self.name.endswith("自治县"):
            return self.name[:2] + "县"
        return self.name

    @property
    def is_district(self) -> bool:
        return self.name.endswith("区")


@dataclass(frozen=True, slots=True)
class City:
    name: str  # "杭州市"
    code: str
    area_code: str  # telephone area code
    slug: str  # pinyin, used for e-mail domains
    counties: tuple[County, ...]


@dataclass(frozen=True, slots=True)
class ProvinceData:
    name: str
    code: str
    slug: str
    cities: tuple[City, ...]


def _counties(spec: str) -> tuple[County, ...]:
    """Parse "上城区:330102* 桐庐县:330122" (a trailing * marks a core urban district)."""
    out = []
    for item in spec.split():
        name, code = item.split(":")
        out.append(County(name, code.rstrip("*"), core=code.endswith("*")))
    return tuple(out)


ZHEJIANG = ProvinceData(
    "浙江省",
    "330000",
    "zhejiang",
    (
        City("杭州市", "330100", "0571", "hangzhou", _counties(
            "上城区:330102* 拱墅区:330105* 西湖区:330106* 滨江区:330108* 萧山区:330109 余杭区:330110 "
            "临平区:330113 钱塘区:330114 富阳区:330111 临安区:330112 桐庐县:330122 淳安县:330127 建德市:330182")),
        City("宁波市", "330200", "0574", "ningbo", _counties(
            "海曙区:330203* 江北区:330205* 北仑区:330206 镇海区:330211 鄞州区:330212 奉化区:330213 "
            "余姚市:330281 慈溪市:330282 宁海县:330226 象山县:330225")),
        City("温州市", "330300", "0577", "wenzhou", _counties(
            "鹿城区:330302* 龙湾区:330303 瓯海区:330304 洞头区:330305 永嘉县:330324 平阳县:330326 "
            "苍南县:330327 文成县:330328 泰顺县:330329 瑞安市:330381 乐清市:330382 龙港市:330383")),
        City("嘉兴市", "330400", "0573", "jiaxing", _counties(
            "南湖区:330402* 秀洲区:330411 嘉善县:330421 海盐县:330424 海宁市:330481 平湖市:330482 桐乡市:330483")),
        City("湖州市", "330500", "0572", "huzhou", _counties(
            "吴兴区:330502* 南浔区:330503 德清县:330521 长兴县:330522 安吉县:330523")),
        City("绍兴市", "330600", "0575", "shaoxing", _counties(
            "越城区:330602* 柯桥区:330603 上虞区:330604 新昌县:330624 诸暨市:330681 嵊州市:330683")),
        City("金华市", "330700", "0579", "jinhua", _counties(
            "婺城区:330702* 金东区:330703 武义县:330723 浦江县:330726 磐安县:330727 兰溪市:330781 "
            "义乌市:330782 东阳市:330783 永康市:330784")),
        City("衢州市", "330800", "0570", "quzhou", _counties(
            "柯城区:330802* 衢江区:330803 常山县:330822 开化县:330824 龙游县:330825 江山市:330881")),
        City("舟山市", "330900", "0580", "zhoushan", _counties(
            "定海区:330902 普陀区:330903 岱山县:330921 嵊泗县:330922")),
        City("台州市", "331000", "0576", "taizhou", _counties(
            "椒江区:331002* 黄岩区:331003 路桥区:331004 三门县:331022 天台县:331023 仙居县:331024 "
            "温岭市:331081 临海市:331082 玉环市:331083")),
        City("丽水市", "331100", "0578", "lishui", _counties(
            "莲都区:331102 青田县:331121 缙云县:331122 遂昌县:331123 松阳县:331124 云和县:331125 "
            "庆元县:331126 景宁畲族自治县:331127 龙泉市:331181")),
    ),
)  # fmt: skip

# The `county` scale is modelled on Wufeng (五峰土家族自治县, Yichang, Hubei): 8 townships, ~135 village clinics.
HUBEI_WUFENG = ProvinceData(
    "湖北省",
    "420000",
    "hubei",
    (City("宜昌市", "420500", "0717", "yichang", _counties("五峰土家族自治县:420528")),),
)
WUFENG_TOWNSHIPS: tuple[str, ...] = (
    "五峰镇", "渔洋关镇", "仁和坪镇", "长乐坪镇", "湾潭镇", "傅家堰乡", "牛庄乡", "采花乡",
)  # fmt: skip

# Township stems (many are real Zhejiang place names, used here without regard to their real county).
_TOWNSHIP_TEXT = """
    分水 百江 横村 瑶琳 江南 凤川 新合 合村 钟山 汾口 威坪 姜家 梓桐 临岐 石林 大墅 里商
    文昌 中洲 安阳 浪川 屏门 左口 王阜 宋村 鸠坑 界首 金峰 富文 乾潭 梅城 寿昌 大同 李家
    航头 下涯 三都 钦堆 莲花 大洋 洋溪 更楼 瓜沥 临浦 义桥 所前 衙前 闻堰 河上 戴村 浦阳
    进化 楼塔 党湾 益农 靖江 南阳 新街 宁围 径山 瓶窑 良渚 黄湖 鸬鸟 百丈 中泰 闲林 仓前
    五常 塘栖 崇贤 运河 乔司 星桥 东湖 南苑 新登 场口 常安 万市 洞桥 胥口 渌渚 大源 灵桥
    里山 湖源 上官 常绿 春建 永昌 於潜 昌化 龙岗 河桥 湍口 岛石 高虹 板桥 锦北 玲珑 柳市
    虹桥 大荆 芙蓉 雁荡 清江 南塘 塘下 飞云 仙降 马屿 陶山 湖岭 高楼 桐浦 鳌江 萧江 水头
    腾蛟 山门 昆阳 万全 钱库 金乡 灵溪 藻溪 桥墩 矾山 马站 大峃 珊溪 玉壶 黄坦 西坑 罗阳
    司前 筱村 泗溪 雅阳 彭溪 三魁 仕阳 横溪 梅林 姜山 咸祥 瞻岐 塘溪 东吴 章水 龙观 古林
    集士港 石碶 洞桥 鄞江 鸣鹤 观海卫 掌起 龙山 周巷 泗门 梁弄 大岚 陆埠 马渚 牟山 河姆渡
    三七市 丈亭 西店 深甽 桥头胡 岔路 前童 一市 长街 力洋 茶院 越溪 胡陈 石浦 西周 贤庠
    墙头 定塘 鹤浦 新桥 大徐 晓塘 黄避岙 茅洋 高塘 新塍 王江泾 油车港 洪合 王店 西塘 姚庄
    陶庄 天凝 干窑 大云 武原 通元 澉浦 百步 沈荡 于城 长安 许村 周王庙 盐官 斜桥 丁桥
    袁花 黄湾 当湖 新埭 新仓 独山港 乍浦 曹桥 林埭 乌镇 濮院 屠甸 崇福 洲泉 大麻 河山
    石门 高桥 练市 善琏 双林 菱湖 和孚 千金 石淙 旧馆 新市 乾元 禹越 莫干山 钟管 洛舍
    雉城 煤山 泗安 和平 李家巷 洪桥 夹浦 林城 虹星桥 递铺 孝丰 天荒坪 报福 杭垓 天子湖
    溪龙 梅溪 鄣吴 上墅 平桥 柯岩 钱清 杨汛桥 安昌 齐贤 马鞍 福全 漓渚 平水 稽东 王坛
    夏履 崧厦 丰惠 永和 章镇 下管 汤浦 岭南 沥海 小越 东关 盖北 儒岙 澄潭 镜岭 回山 沙溪
    小将 梅渚 城西 大市聚 店口 枫桥 次坞 牌头 安华 街亭 璜山 马剑 同山 陈宅 赵家 五泄
    岭北 甘霖 长乐 崇仁 黄泽 三界 石璜 谷来 仙岩 金庭 贵门 竹溪 通济 下王 王宅 柳城 履坦
    桃溪 坦洪 白姆 大溪 郑宅 岩头 黄宅 杭坪 檀溪 花桥 虞宅 尚湖 玉山 尖山 仁川 大盘 方前
    冷水 双峰 安文 游埠 马涧 女埠 诸葛 梅江 香溪 黄店 横溪 佛堂 苏溪 大陈 赤岸 义亭 上溪
    廿三里 横店 南马 千祥 湖溪 虎鹿 歌山 巍山 佐村 画水 马宅 古山 芝英 石柱 龙山 西溪
    唐先 象珠 方岩 全塘 后溪 莲花 杜泽 高家 湖南 云溪 峡川 大洲 周家 球川 芳村 辉埠
    同弓 紫港 何家 音坑 华埠 马金 池淮 村头 桐村 杨林 苏庄 齐溪 湖镇 横山 塔石 溪口 詹家
    小南海 罗家 沐尘 庙下 贺村 峡口 石门 坛石 大桥 凤林 新塘边 长台 双塔 张村 保安 塘边
    白沙 马岙 小沙 干览 金塘 六横 虾峙 桃花 东极 高亭 衢山 东沙 长涂 菜园 嵊山 洋山 五龙
    黄龙 枸杞 院桥 沙埠 高桥 宁溪 北洋 头陀 澄江 新前 桐屿 峰江 新桥 横街 蓬街 金清 海门
    章安 下陈 前所 海游 沙柳 珠岙 亭旁 横渡 健跳 浦坝港 花桥 泳溪 平桥 街头 白鹤 石梁
    三合 洪畴 坦头 雷峰 南屏 横溪 埠头 白塔 田市 官路 下各 步路 朱溪 泽国 大溪 松门 箬横
    新河 石塘 滨海 温峤 城南 坞根 杜桥 桃渚 上盘 小芝 白水洋 括苍 尤溪 汛桥 东塍 河头
    永丰 涌泉 楚门 清港 沙门 芦浦 龙溪 坎门 干江 碧湖 大港头 老竹 雅溪 丽新 仙渡 峰源
    太平 黄村 油竹 温溪 东源 高湖 腊口 仁庄 章村 北山 山口 海口 贵岙 阜山 方山 壶镇 新建
    新碧 东渡 大源 东方 舒洪 大洋 胡源 妙高 云峰 金竹 大柘 石练 王村口 湖山 焦滩 濂竹
    西屏 望松 古市 大东坝 新兴 玉岩 象溪 紫金 崇头 石塘 雾溪 沙铺 赤石 安民 屏都 黄田
    竹口 荷地 左溪 贤良 隆宫 百山祖 鹤溪 渤海 东坑 英川 沙湾 大均 澄照 梅岐 郑坑 龙渊
    八都 上垟 小梅 查田 安仁 锦溪 住龙 屏南 宝溪 竹垟 道太 兰巨
"""
TOWNSHIP_STEMS: tuple[str, ...] = tuple(dict.fromkeys(_TOWNSHIP_TEXT.split()))

# Two halves of plausible village names (东岙, 上坞, 石桥头 …); combined and de-duplicated per township.
VILLAGE_FIRST: tuple[str, ...] = tuple(
    "东西南北上下大小新老石高黄白青金马王李张陈杨周徐朱吴沈方叶余汪何郑楼应章俞三五双龙凤桃梅竹柏松茶桐杏"
    "枫柳花里外前后中横长塘溪岭岩坑湖"
)
VILLAGE_SECOND: tuple[str, ...] = (
    "坞", "岙", "坑", "溪", "塘", "桥", "山", "岭", "湾", "源", "口", "坪", "埠", "庄", "畈", "垟", "岗", "坂",
    "田", "店", "家", "园", "林", "湖", "浦", "港", "头", "岩", "坦", "洲", "墩", "坎", "坳", "岸",
    "桥头", "山下", "岭脚", "溪口", "塘下", "畈田", "坑口", "湾里", "家坞", "山头",
)  # fmt: skip

# ---------------------------------------------------------------------------------------------------------------
# Titles and staffing, by department kind
# ---------------------------------------------------------------------------------------------------------------

# A title pool: (title, weight, share of women). Titles are shared string objects across all users.
TitlePool = tuple[tuple[str, float, float], ...]


@dataclass(frozen=True, slots=True)
class Staffing:
    """Who works in a department of one kind: leader titles (1st, 2nd leader), members, and a size range."""

    leaders: tuple[TitlePool, TitlePool]
    members: TitlePool
    size: tuple[int, int]
    scaled: bool = True  # False: head counts of unit leadership and village clinics don't shrink with the scale
    email_share: float = 0.3


_DOCTORS: TitlePool = (
    ("主任医师", 1, 0.35), ("副主任医师", 2, 0.4), ("主治医师", 4, 0.45), ("住院医师", 4, 0.5), ("医师", 1, 0.5),
)  # fmt: skip
_NURSES: TitlePool = (("副主任护师", 0.3, 0.98), ("主管护师", 3, 0.98), ("护师", 5, 0.97), ("护士", 4, 0.95))
_TECHS: TitlePool = (
    ("副主任技师", 0.5, 0.5), ("主管技师", 3, 0.55), ("技师", 4, 0.55), ("技士", 2, 0.5), ("主治医师", 1, 0.5),
)  # fmt: skip
_PHARMACISTS: TitlePool = (("主任药师", 0.3, 0.5), ("主管药师", 3, 0.65), ("药师", 5, 0.7), ("药士", 2, 0.7))
_ADMIN_STAFF: TitlePool = (("副科长", 1, 0.5), ("科员", 6, 0.6), ("干事", 2, 0.6), ("会计", 0.5, 0.85))
_CIVIL_SERVANTS: TitlePool = (
    ("一级调研员", 0.5, 0.3), ("二级调研员", 0.7, 0.35), ("三级调研员", 0.8, 0.4), ("四级调研员", 1, 0.4),
    ("一级主任科员", 1.5, 0.45), ("二级主任科员", 1.5, 0.5), ("三级主任科员", 1, 0.5), ("四级主任科员", 1, 0.5),
    ("一级科员", 1, 0.55), ("科员", 2, 0.55),
)  # fmt: skip
_CITY_CIVIL_SERVANTS: TitlePool = (
    ("四级调研员", 0.5, 0.4), ("一级主任科员", 1, 0.45), ("二级主任科员", 1.5, 0.5), ("三级主任科员", 1.5, 0.5),
    ("四级主任科员", 1.5, 0.5), ("一级科员", 1.5, 0.55), ("科员", 3, 0.55),
)  # fmt: skip
_COUNTY_CIVIL_SERVANTS: TitlePool = (
    ("四级主任科员", 1, 0.45), ("一级科员", 2, 0.5), ("科员", 4, 0.55), ("办事员", 1.5, 0.6),
)  # fmt: skip
_GP_STAFF: TitlePool = (
    ("主治医师", 2, 0.45), ("全科医师", 3, 0.45), ("执业医师", 2, 0.45), ("执业助理医师", 2, 0.45),
    ("护师", 3, 0.97), ("护士", 2, 0.95), ("中医师", 0.7, 0.4),
)  # fmt: skip
_PUBLIC_HEALTH_STAFF: TitlePool = (
    ("公卫医师", 3, 0.55), ("公卫执业助理医师", 2, 0.55), ("护师", 2, 0.97), ("护士", 1, 0.95), ("科员", 1, 0.6),
)  # fmt: skip

STAFFING: dict[str, Staffing] = {
    "province_head": Staffing(
        ((("主任", 1, 0.2),), (("党组书记", 1, 0.2),)),
        (("副主任", 4, 0.3), ("党组成员", 1, 0.3), ("一级巡视员", 1, 0.2), ("二级巡视员", 1, 0.3)),
        (5, 8), scaled=False, email_share=0.8,
    ),
    "province_division": Staffing(
        ((("处长", 1, 0.35),), (("副处长", 1, 0.4),)), _CIVIL_SERVANTS, (4, 9), email_share=0.8
    ),
    "city_head": Staffing(
        ((("主任", 1, 0.25),), (("党委书记", 1, 0.25),)),
        (("副主任", 4, 0.3), ("党委委员", 1, 0.3), ("二级巡视员", 0.5, 0.3)),
        (4, 6), scaled=False, email_share=0.7,
    ),
    "city_division": Staffing(
        ((("科长", 1, 0.4),), (("副科长", 1, 0.45),)), _CITY_CIVIL_SERVANTS, (2, 6), email_share=0.7
    ),
    "county_head": Staffing(
        ((("局长", 1, 0.25),), (("党委书记", 1, 0.25),)),
        (("副局长", 4, 0.35), ("党委委员", 1, 0.3), ("四级调研员", 0.5, 0.4)),
        (3, 5), scaled=False, email_share=0.5,
    ),
    "county_division": Staffing(
        ((("科长", 1, 0.45), ("股长", 0.5, 0.45)), (("副科长", 1, 0.5),)), _COUNTY_CIVIL_SERVANTS, (1, 4),
        email_share=0.5,
    ),
    "hospital_head": Staffing(
        ((("院长", 1, 0.2),), (("党委书记", 1, 0.25),)),
        (("副院长", 5, 0.3), ("总会计师", 0.5, 0.6), ("纪委书记", 0.5, 0.35), ("工会主席", 0.5, 0.5)),
        (3, 7), scaled=False, email_share=0.6,
    ),
    "clinical_group": Staffing(
        ((("科主任", 1, 0.25), ("主任医师", 1, 0.25)), (("科副主任", 1, 0.3),)),
        (("主任医师", 1, 0.3), ("副主任医师", 1, 0.35)), (1, 3),
    ),
    "clinical": Staffing(
        ((("科主任", 2, 0.3), ("主任医师", 1, 0.3), ("副主任医师", 1, 0.35)), (("护士长", 1, 0.97),)),
        _DOCTORS + _NURSES, (12, 34),
    ),
    "clinical_doctors": Staffing(  # a clinical department whose nurses sit in its wards
        ((("科主任", 2, 0.3), ("主任医师", 1, 0.3)), (("科副主任", 1, 0.35),)), _DOCTORS, (6, 16)
    ),
    "ward": Staffing(((("护士长", 1, 0.97),), (("副护士长", 1, 0.97),)), _NURSES, (12, 26), email_share=0.15),
    "nursing": Staffing(
        ((("护理部主任", 1, 0.97),), (("护理部副主任", 1, 0.97),)),
        (("主任护师", 1, 0.97), ("副主任护师", 2, 0.97), ("主管护师", 2, 0.98)), (3, 6),
    ),
    "theatre": Staffing(((("护士长", 1, 0.97),), (("副护士长", 1, 0.97),)), _NURSES, (14, 30)),
    "medtech": Staffing(
        ((("科主任", 2, 0.4), ("主任技师", 1, 0.45)), (("科副主任", 1, 0.45),)), _TECHS, (6, 24)
    ),
    "pharmacy": Staffing(
        ((("药剂科主任", 1, 0.5), ("主任药师", 1, 0.5)), (("副主任药师", 1, 0.6),)), _PHARMACISTS, (6, 18)
    ),
    "admin": Staffing(((("科长", 1, 0.45),), (("副科长", 1, 0.5),)), _ADMIN_STAFF, (3, 10), email_share=0.5),
    "information": Staffing(
        ((("科长", 1, 0.25),), (("副科长", 1, 0.3),)),
        (("工程师", 3, 0.3), ("助理工程师", 2, 0.35), ("科员", 2, 0.45)), (3, 8), email_share=0.8,
    ),
    "office": Staffing(  # 医共体管理办公室, 双向转诊服务中心: staffed by secondees as well as their own people
        ((("主任", 1, 0.35),), (("副主任", 1, 0.4),)),
        (("科员", 4, 0.6), ("干事", 2, 0.6), ("主管护师", 1, 0.98), ("主治医师", 1, 0.45)), (2, 6),
        email_share=0.6,
    ),
    "township_head": Staffing(
        ((("院长", 1, 0.25),), (("党支部书记", 1, 0.3),)),
        (("副院长", 3, 0.3), ("院长助理", 0.5, 0.4)), (2, 4), scaled=False, email_share=0.4,
    ),
    "township_clinical": Staffing(
        ((("科主任", 1, 0.35), ("主治医师", 1, 0.4)), (("护士长", 1, 0.97),)), _GP_STAFF, (3, 12), email_share=0.15
    ),
    "public_health": Staffing(
        ((("科长", 1, 0.5), ("公卫医师", 1, 0.55)), (("副科长", 1, 0.55),)), _PUBLIC_HEALTH_STAFF, (3, 9),
        email_share=0.15,
    ),
    "family_doctor_team": Staffing(
        ((("团队长", 1, 0.4), ("全科医师", 1, 0.4)), (("副团队长", 1, 0.45),)),
        (("全科医师", 2, 0.45), ("护师", 2, 0.97), ("护士", 1, 0.95), ("公卫医师", 1, 0.55), ("乡村医生", 1, 0.3)),
        (3, 7), email_share=0.1,
    ),
    "township_office": Staffing(
        ((("主任", 1, 0.5), ("负责人", 1, 0.5)), (("副主任", 1, 0.5),)),
        (("科员", 3, 0.6), ("会计", 1, 0.85), ("出纳", 0.5, 0.85), ("干事", 1, 0.6)), (1, 5), email_share=0.2,
    ),
    "township_pharmacy": Staffing(
        ((("主管药师", 1, 0.6), ("负责人", 1, 0.6)), (("药师", 1, 0.65),)), (("药师", 3, 0.7), ("药士", 2, 0.7)),
        (2, 5), email_share=0.1,
    ),
    "township_tech": Staffing(
        ((("主管技师", 1, 0.5), ("负责人", 0.5, 0.5)), (("技师", 1, 0.5),)),
        (("技师", 3, 0.5), ("检验师", 2, 0.6), ("技士", 1, 0.5)), (1, 5), email_share=0.1,
    ),
    "village": Staffing(
        ((("乡村医生", 1, 0.3),), (("乡村医生", 1, 0.35),)),
        (("乡村医生", 6, 0.35), ("乡村全科执业助理医师", 1, 0.4), ("护士", 0.5, 0.95)), (1, 3),
        scaled=False, email_share=0.0,
    ),
    "station": Staffing(
        ((("站长", 1, 0.45),), (("副站长", 1, 0.5),)),
        (("全科医师", 3, 0.5), ("护师", 2, 0.97), ("护士", 1, 0.95), ("公卫医师", 1, 0.55)), (2, 5),
        email_share=0.1,
    ),
}  # fmt: skip

# Promotion ladders used by the change simulator (title change = user_modify_org).
PROMOTIONS: dict[str, str] = {
    "医师": "主治医师", "住院医师": "主治医师", "主治医师": "副主任医师", "副主任医师": "主任医师",
    "护士": "护师", "护师": "主管护师", "主管护师": "副主任护师", "副主任护师": "主任护师",
    "技士": "技师", "技师": "主管技师", "主管技师": "副主任技师", "副主任技师": "主任技师",
    "药士": "药师", "药师": "主管药师", "主管药师": "副主任药师",
    "办事员": "科员", "科员": "一级科员", "一级科员": "四级主任科员", "四级主任科员": "三级主任科员",
    "三级主任科员": "二级主任科员", "二级主任科员": "一级主任科员", "一级主任科员": "四级调研员",
    "副科长": "科长", "副处长": "处长", "副主任": "主任", "副院长": "院长", "副局长": "局长",
    "执业助理医师": "执业医师", "执业医师": "全科医师", "全科医师": "主治医师", "公卫执业助理医师": "公卫医师",
    "乡村医生": "乡村全科执业助理医师", "干事": "科员", "助理工程师": "工程师", "工程师": "高级工程师",
}  # fmt: skip

# ---------------------------------------------------------------------------------------------------------------
# Department templates: (name, kind) pairs; the generator expands groups (内科 → 心血管内科 …) and wards.
# ---------------------------------------------------------------------------------------------------------------

PROVINCE_DIVISIONS: tuple[str, ...] = (
    "办公室", "人事处", "规划发展与信息化处", "财务处", "法规处", "体制改革处", "疾病预防控制处", "医政医管处",
    "基层卫生健康处", "卫生应急办公室", "科技教育处", "综合监督处", "药物政策与基本药物制度处",
    "食品安全标准与监测评估处", "老龄健康处", "妇幼健康处", "职业健康处", "人口监测与家庭发展处", "宣传处",
    "国际合作与交流处", "保健处", "机关党委", "离退休干部处", "审计处", "数字健康处", "中医药综合处",
    "医疗资源配置处", "健康浙江建设处", "爱国卫生运动委员会办公室", "信访办公室",
)  # fmt: skip
PROVINCE_CORE_DIVISIONS = 8  # the first N above are always present

CITY_DIVISIONS: tuple[str, ...] = (
    "办公室", "人事科", "规划发展与信息化科", "财务科", "医政医管科", "基层卫生健康科", "疾病预防控制科",
    "法规科", "体制改革科", "卫生应急办公室", "科技教育科", "综合监督科", "药政科", "老龄健康科", "妇幼健康科",
    "职业健康科", "人口监测与家庭发展科", "宣传科", "中医药科", "机关党委", "离退休干部科", "审计科",
    "爱国卫生运动委员会办公室", "信访科", "数字健康科",
)  # fmt: skip
CITY_CORE_DIVISIONS = 7

COUNTY_DIVISIONS: tuple[str, ...] = (
    "办公室", "人事科", "规划财务科", "医政医管科", "基层卫生科", "疾病预防控制科", "公共卫生科",
    "综合监督科", "妇幼健康科", "老龄健康科", "中医药科", "法规科", "党建办公室", "爱卫办", "信息中心",
    "医共体管理办公室", "卫生应急办公室",
)  # fmt: skip
COUNTY_CORE_DIVISIONS = 5

MEDICINE_SUBS: tuple[str, ...] = (
    "心血管内科", "呼吸与危重症医学科", "消化内科", "神经内科", "肾内科", "内分泌科", "血液内科", "老年医学科",
    "风湿免疫科",
)  # fmt: skip
SURGERY_SUBS: tuple[str, ...] = (
    "普外科", "骨科", "神经外科", "泌尿外科", "胸外科", "肝胆胰外科", "甲乳外科", "烧伤整形科",
)  # fmt: skip
ORTHOPAEDIC_SUBS: tuple[str, ...] = ("创伤骨科", "脊柱外科", "关节外科")
TCM_MEDICINE_SUBS: tuple[str, ...] = ("脾胃病科", "心病科", "脑病科", "肺病科", "肾病科", "内分泌科")

# Lead hospital (county People's hospital): always-present departments, then optional ones.
LEAD_CORE: tuple[tuple[str, str], ...] = (
    ("院长办公室", "admin"), ("党委办公室", "admin"), ("医务科", "admin"), ("护理部", "nursing"),
    ("财务科", "admin"), ("人事科", "admin"), ("信息科", "information"), ("总务科", "admin"),
    ("医共体管理办公室", "office"), ("双向转诊服务中心", "office"), ("内科", "clinical_group"),
    ("外科", "clinical_group"), ("妇产科", "clinical"), ("儿科", "clinical"), ("急诊科", "clinical"),
    ("检验科", "medtech"), ("放射科", "medtech"), ("药剂科", "pharmacy"),
)  # fmt: skip
LEAD_OPTIONAL: tuple[tuple[str, str], ...] = (
    ("质量管理科", "admin"), ("院感科", "admin"), ("医保办", "admin"), ("科教科", "admin"),
    ("预防保健科", "admin"), ("设备科", "admin"), ("保卫科", "admin"), ("宣传科", "admin"),
    ("审计科", "admin"), ("采购中心", "admin"), ("健康管理中心", "clinical"), ("重症医学科", "clinical"),
    ("感染科", "clinical"), ("康复医学科", "clinical"), ("中医科", "clinical"), ("眼科", "clinical"),
    ("耳鼻咽喉科", "clinical"), ("口腔科", "clinical"), ("皮肤科", "clinical"), ("麻醉科", "clinical"),
    ("手术室", "theatre"), ("肿瘤科", "clinical"), ("全科医学科", "clinical"), ("超声科", "medtech"),
    ("病理科", "medtech"), ("心电图室", "medtech"), ("输血科", "medtech"), ("血液透析中心", "clinical"),
    ("内镜中心", "medtech"), ("远程会诊中心", "office"), ("门诊部", "admin"), ("病案室", "admin"),
    ("营养科", "medtech"), ("精神心理科", "clinical"), ("疼痛科", "clinical"), ("客户服务中心", "admin"),
)  # fmt: skip

# Lead hospital when it is the county TCM hospital.
TCM_LEAD_CORE: tuple[tuple[str, str], ...] = (
    ("院长办公室", "admin"), ("党委办公室", "admin"), ("医务科", "admin"), ("护理部", "nursing"),
    ("财务科", "admin"), ("人事科", "admin"), ("信息科", "information"), ("医共体管理办公室", "office"),
    ("转诊办", "office"), ("中医内科", "clinical_group"), ("外科", "clinical_group"), ("针灸推拿科", "clinical"),
    ("骨伤科", "clinical"), ("妇科", "clinical"), ("儿科", "clinical"), ("急诊科", "clinical"),
    ("治未病中心", "clinical"), ("中药房", "pharmacy"), ("西药房", "pharmacy"), ("检验科", "medtech"),
    ("放射科", "medtech"),
)  # fmt: skip
TCM_OPTIONAL: tuple[tuple[str, str], ...] = (
    ("肛肠科", "clinical"), ("康复科", "clinical"), ("皮肤科", "clinical"), ("眼科", "clinical"),
    ("耳鼻喉科", "clinical"), ("口腔科", "clinical"), ("重症医学科", "clinical"), ("麻醉科", "clinical"),
    ("手术室", "theatre"), ("超声科", "medtech"), ("心电图室", "medtech"), ("质量管理科", "admin"),
    ("院感科", "admin"), ("医保办", "admin"), ("科教科", "admin"), ("总务科", "admin"), ("设备科", "admin"),
    ("膏方门诊", "clinical"), ("中医经典病房", "clinical"), ("国医馆", "clinical"), ("煎药室", "pharmacy"),
    ("体检中心", "clinical"), ("老年病科", "clinical"), ("肿瘤科", "clinical"),
)  # fmt: skip

# Other county-level member units: name suffix (after the county name) → (core, optional) departments.
COUNTY_UNIT_TEMPLATES: dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {
    "中医院": (
        (("院办", "admin"), ("医务科", "admin"), ("护理部", "nursing"), ("中医内科", "clinical"),
         ("针灸推拿科", "clinical"), ("骨伤科", "clinical"), ("中药房", "pharmacy"), ("检验科", "medtech")),
        (("财务科", "admin"), ("中医外科", "clinical"), ("妇科", "clinical"), ("儿科", "clinical"),
         ("康复科", "clinical"), ("治未病中心", "clinical"), ("放射科", "medtech"), ("急诊科", "clinical"),
         ("肛肠科", "clinical"), ("信息科", "information"), ("西药房", "pharmacy"), ("超声科", "medtech"),
         ("脾胃病科", "clinical"), ("心病科", "clinical"), ("脑病科", "clinical"), ("体检中心", "clinical")),
    ),
    "妇幼保健院": (
        (("院办", "admin"), ("医务科", "admin"), ("护理部", "nursing"), ("妇女保健科", "clinical"),
         ("儿童保健科", "clinical"), ("产科", "clinical"), ("妇科", "clinical"), ("检验科", "medtech")),
        (("财务科", "admin"), ("儿科", "clinical"), ("新生儿科", "clinical"), ("计划生育科", "clinical"),
         ("孕产保健部", "clinical"), ("超声科", "medtech"), ("药剂科", "pharmacy"), ("乳腺科", "clinical"),
         ("生殖健康科", "clinical"), ("信息科", "information"), ("出生医学证明办公室", "admin"),
         ("婚前保健科", "clinical"), ("放射科", "medtech")),
    ),
    "第二人民医院": (
        (("院办", "admin"), ("医务科", "admin"), ("护理部", "nursing"), ("内科", "clinical"),
         ("外科", "clinical"), ("急诊科", "clinical"), ("药剂科", "pharmacy"), ("检验科", "medtech")),
        (("财务科", "admin"), ("妇产科", "clinical"), ("儿科", "clinical"), ("骨科", "clinical"),
         ("放射科", "medtech"), ("超声科", "medtech"), ("中医科", "clinical"), ("康复科", "clinical"),
         ("信息科", "information"), ("眼科", "clinical"), ("口腔科", "clinical"), ("手术室", "theatre"),
         ("麻醉科", "clinical"), ("重症医学科", "clinical"), ("体检中心", "clinical")),
    ),
    "中西医结合医院": (
        (("院办", "admin"), ("医务科", "admin"), ("护理部", "nursing"), ("内科", "clinical"),
         ("外科", "clinical"), ("中医科", "clinical"), ("药剂科", "pharmacy"), ("检验科", "medtech")),
        (("财务科", "admin"), ("针灸科", "clinical"), ("康复科", "clinical"), ("骨伤科", "clinical"),
         ("放射科", "medtech"), ("超声科", "medtech"), ("急诊科", "clinical"), ("信息科", "information")),
    ),
    "精神卫生中心": (
        (("院办", "admin"), ("医务科", "admin"), ("护理部", "nursing"), ("精神科一病区", "ward"),
         ("精神科二病区", "ward"), ("药剂科", "pharmacy")),
        (("心理咨询门诊", "clinical"), ("老年精神科", "clinical"), ("检验科", "medtech"), ("财务科", "admin"),
         ("康复科", "clinical"), ("精神科三病区", "ward"), ("社区精神卫生科", "public_health")),
    ),
}  # fmt: skip

# Township hospital (乡镇卫生院) and community health centre (社区卫生服务中心) departments.
TOWNSHIP_CORE: tuple[tuple[str, str], ...] = (
    ("办公室", "township_office"), ("全科", "township_clinical"), ("公共卫生科", "public_health"),
    ("药房", "township_pharmacy"),
)  # fmt: skip
TOWNSHIP_OPTIONAL: tuple[tuple[str, str], ...] = (
    ("中医科", "township_clinical"), ("内科", "township_clinical"), ("外科", "township_clinical"),
    ("妇产科", "township_clinical"), ("口腔科", "township_clinical"), ("康复科", "township_clinical"),
    ("检验科", "township_tech"), ("放射科", "township_tech"), ("B超室", "township_tech"),
    ("心电图室", "township_tech"), ("预防接种门诊", "public_health"), ("住院部", "township_clinical"),
    ("医务科", "township_office"), ("财务室", "township_office"), ("慢病管理科", "public_health"),
    ("妇幼保健科", "public_health"), ("急诊室", "township_clinical"), ("护理部", "township_clinical"),
    ("中医馆", "township_clinical"), ("健康管理科", "public_health"),
)  # fmt: skip
CHC_CORE: tuple[tuple[str, str], ...] = (
    ("综合办公室", "township_office"), ("全科医学科", "township_clinical"), ("预防保健科", "public_health"),
    ("药房", "township_pharmacy"),
)  # fmt: skip
CHC_OPTIONAL: tuple[tuple[str, str], ...] = (
    ("中医科", "township_clinical"), ("康复科", "township_clinical"), ("口腔科", "township_clinical"),
    ("妇女儿童保健科", "public_health"), ("检验科", "township_tech"), ("医学影像科", "township_tech"),
    ("预防接种门诊", "public_health"), ("慢病管理科", "public_health"), ("财务室", "township_office"),
    ("护理部", "township_clinical"), ("安宁疗护病区", "township_clinical"), ("健康管理科", "public_health"),
)  # fmt: skip

# ---------------------------------------------------------------------------------------------------------------
# New departments and renames used by the change simulator
# ---------------------------------------------------------------------------------------------------------------

NEW_HOSPITAL_DEPTS: tuple[str, ...] = (
    "胸痛中心", "卒中中心", "创伤中心", "日间手术中心", "互联网医院办公室", "睡眠医学科", "发热门诊",
    "慢病管理中心", "医学影像中心", "心电诊断中心", "消毒供应中心", "临床营养科", "安宁疗护病区",
    "DRG管理办公室", "运营管理部", "医共体检验中心", "医共体影像中心", "医共体心电中心", "药学部", "MDT中心",
)  # fmt: skip
NEW_TOWNSHIP_DEPTS: tuple[str, ...] = (
    "慢病管理门诊", "中医馆", "预防接种门诊", "健康小屋", "医养结合服务中心", "康复科", "口腔科",
    "家庭医生签约服务中心", "心电图室", "两慢病一体化门诊",
)  # fmt: skip
NEW_GOV_DIVISIONS: tuple[str, ...] = (
    "数字健康", "健康促进", "应急管理", "医共体建设指导", "安全生产", "信访", "托育服务", "医疗保障协调",
)  # fmt: skip
RENAMES: dict[str, str] = {
    "放射科": "医学影像科", "药剂科": "药学部", "信息科": "信息中心", "转诊办": "双向转诊服务中心",
    "双向转诊服务中心": "转诊服务中心", "医共体管理办公室": "医共体管理中心", "院长办公室": "党政综合办公室",
    "总务科": "后勤保障科", "质量管理科": "医疗质量管理科", "医保办": "医保物价科", "健康管理中心": "体检中心",
    "全科": "全科医学科", "办公室": "综合办公室", "药房": "药剂科", "公共卫生科": "公共卫生服务中心",
    "B超室": "超声科", "心电图室": "心电诊断中心", "预防保健科": "公共卫生科", "人事科": "组织人事科",
    "医务科": "医务部", "院办": "院长办公室", "设备科": "医学装备科",
}  # fmt: skip
