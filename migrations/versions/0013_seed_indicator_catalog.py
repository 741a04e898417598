"""seed the indicator catalog (指标库): the 2024 national set of 14 and the operational catalogue

Literal data, no app imports (a migration must keep meaning what it meant when it was written). Sources:
reference/domain.md §1.2 (the 14 national indicators; names confirmed, formulas are our operationalisation and
UNCONFIRMED), §1.3 (2020 legacy aliases, kept in `note`), §1.4–§1.5 (operational catalogue), §4.6 (referral KPIs)
and §5.3 (family-doctor formulas). Targets are not seeded: a target belongs to a region node and a migration has
no tree; the figures we could source are quoted in `note` for operators to enter (docs/supervision.md).

Downgrade removes exactly the seeded codes, and refuses (raises) when anything points at them: values, roll-ups,
targets, definition versions or submissions' values. Those are operators' data; losing them silently to a schema
step back is worse than a failed downgrade. Delete them deliberately first (or downgrade past 0012, which drops
the tables with everything in them).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

indicators = sa.table(
    "indicators",
    sa.column("id", sa.Integer),
    sa.column("code", sa.String),
    sa.column("national_no", sa.Integer),
    sa.column("name", sa.String),
    sa.column("dimension", sa.String),
    sa.column("kind", sa.String),
    sa.column("numerator_definition", sa.Text),
    sa.column("denominator_definition", sa.Text),
    sa.column("unit", sa.String),
    sa.column("scale", sa.Integer),
    sa.column("direction", sa.String),
    sa.column("period", sa.String),
    sa.column("collection", sa.String),
    sa.column("source", sa.String),
    sa.column("reporting_level", sa.String),
    sa.column("bounded", sa.Boolean),
    sa.column("additive", sa.Boolean),
    sa.column("automatic_source", sa.String),
    sa.column("note", sa.Text),
    sa.column("active", sa.Boolean),
    sa.column("version", sa.Integer),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("updated_by", sa.String),
)


def _rate(
    code,
    name,
    dimension,
    num,
    den,
    *,
    unit="%",
    scale=100,
    direction="up",
    period="month",
    collection="automatic",
    source,
    level="institution",
    bounded=True,
    additive=True,
    auto=None,
    note=None,
    national_no=None,
) -> dict:
    return {
        "code": code,
        "national_no": national_no,
        "name": name,
        "dimension": dimension,
        "kind": "rate",
        "numerator_definition": num,
        "denominator_definition": den,
        "unit": unit,
        "scale": scale,
        "direction": direction,
        "period": period,
        "collection": collection,
        "source": source,
        "reporting_level": level,
        "bounded": bounded,
        "additive": additive,
        "automatic_source": auto,
        "note": note,
    }


def _count(
    code,
    name,
    dimension,
    num,
    *,
    unit,
    direction="monitor",
    period="month",
    collection="automatic",
    source,
    level="institution",
    auto=None,
    note=None,
    national_no=None,
) -> dict:
    row = _rate(
        code,
        name,
        dimension,
        num,
        None,
        unit=unit,
        scale=1,
        direction=direction,
        period=period,
        collection=collection,
        source=source,
        level=level,
        bounded=False,
        auto=auto,
        note=note,
        national_no=national_no,
    )
    return row | {"kind": "count"}


def _qualitative(code, national_no, name, num, note) -> dict:
    # A verdict per county: numerator 1 (达标) or 0 over 1, so a roll-up reads as the share of counties 达标.
    row = _rate(
        code,
        name,
        "close_knit",
        num,
        "参加评估的县（市、区）数（每县计 1）",
        period="year",
        collection="manual",
        source="评估组现场评估（佐证材料）",
        level="county",
        note=note,
        national_no=national_no,
    )
    return row | {"kind": "qualitative"}


_FORMULA = "口径为本平台的操作化定义，国家文件未给出公式，待核实（UNCONFIRMED）。"

NATIONAL = [
    _qualitative(
        "NCM-01",
        1,
        "资源统一管理",
        "评估达标（1）或未达标（0）：人事、财务、业务、药品、信息等统一管理，有明确的制度安排并已组织实施",
        "定性指标：以政策文件、实物与纸质材料、访谈为佐证，评估人给出达标/未达标结论。"
        "达标标准“有明确的制度安排并已组织实施”为国家问答原文；评分细则待核实（UNCONFIRMED）。"
        "2020版对应：管理共同体（人财物统一管理）。",
    ),
    _qualitative(
        "NCM-02",
        2,
        "医共体内部民主决策",
        "评估达标（1）或未达标（0）：医共体章程、管委会/理事会议事规则及会议纪要",
        "定性指标：佐证为章程与会议纪要。评分细则待核实（UNCONFIRMED）。2020版对应：责任共同体（管委会）。",
    ),
    _qualitative(
        "NCM-03",
        3,
        "服务协同联动",
        "评估达标（1）或未达标（0）：资源共享中心运行、双向转诊、医防融合",
        "定性指标：佐证为共享中心运行记录、转诊记录、医防融合材料。评分细则待核实（UNCONFIRMED）。"
        "2020版对应：服务共同体。",
    ),
    _rate(
        "NCM-04",
        "二级及以上医疗卫生机构中级及以上医师到基层医疗卫生机构派驻人数（每万常住人口）",
        "homogenisation",
        "年内二级及以上医疗卫生机构派驻到本县基层医疗卫生机构的中级及以上职称医师人数",
        "县域常住人口数",
        unit="人/万人",
        scale=10000,
        period="year",
        collection="manual",
        source="卫生健康行政部门人事记录；统计公报（常住人口）",
        level="county",
        bounded=False,
        national_no=4,
        note=_FORMULA + "第三方实现只计年内连续派驻满 6 个月的长期派驻（巡诊不计，跨年派驻只计年内天数），"
        "该“满 6 个月”规则未经证实（UNCONFIRMED）。2020版别名：中级及以上医师派驻基层人数。",
    ),
    _rate(
        "NCM-05",
        "影像心电中心服务开展与心电设备村级覆盖率",
        "homogenisation",
        "配备可向县域心电中心传输心电图设备的村卫生室数",
        "村卫生室总数",
        period="year",
        collection="manual",
        source="机构填报；县域心电中心记录",
        national_no=5,
        note=_FORMULA + "本条只覆盖指标后半部分（心电设备村级覆盖率）：每个村卫生室报 分子 0/1、分母 1，"
        "或由乡镇卫生院汇总其下村卫生室。前半部分“影像心电中心服务开展”为定性或计数，尚未建指标。",
    ),
    _rate(
        "NCM-06",
        "基层医疗卫生机构人均收入与牵头医院人均收入的比值",
        "homogenisation",
        "基层医疗卫生机构在岗职工年人均收入（元）",
        "牵头医院在岗职工年人均收入（元）",
        unit="比值",
        scale=1,
        period="year",
        collection="manual",
        source="财务/人事年报",
        level="county",
        bounded=False,
        additive=False,
        national_no=6,
        note=_FORMULA + "方向为“越接近 1 越好”，此处记为越高越好（up）。分子分母为人均数，不能跨县相加，"
        "故 additive=false：只在县级显示，不向市、省汇总。",
    ),
    _rate(
        "NCM-07",
        "县域内基层医疗卫生机构诊疗人次数占比",
        "division_of_labour",
        "本机构为乡镇卫生院、社区卫生服务中心（站）或村卫生室时，其诊疗人次数；其他机构为 0",
        "本机构诊疗人次数（县域内全部医疗卫生机构之和即分母）",
        collection="automatic",
        source="HIS 诊疗人次统计",
        national_no=7,
        note=_FORMULA + "按机构填报诊疗人次并沿树汇总；县域内不在医共体树上的机构（如民营医院）的诊疗人次"
        "不在分母中，需另行补报，口径待定（UNCONFIRMED）。2020版别名：县域内基层医疗卫生机构门急诊占比。"
        "目标参考：2019–2020 年国家目标约 65%（旧，仅供参考）；青海 2025 年约 55%。",
    ),
    _rate(
        "NCM-08",
        "医保基金县域内支出占比（不含药店）",
        "division_of_labour",
        "本县参保人医保基金在县域内医疗机构的支出（元）",
        "本县参保人医保基金全部支出（元，不含定点药店）",
        source="医保结算数据",
        level="county",
        national_no=8,
        note=_FORMULA + "2020版别名：医保基金县域内支出率。",
    ),
    _rate(
        "NCM-09",
        "县域内基层医疗卫生机构医保基金支出占比",
        "division_of_labour",
        "医保基金在县域内基层医疗卫生机构的支出（元）",
        "医保基金在县域内全部医疗机构的支出（元）",
        source="医保结算数据",
        level="county",
        national_no=9,
        note=_FORMULA + "2020版别名：县域内基层医疗卫生机构医保基金占比。",
    ),
    _rate(
        "NCM-10",
        "参保人在县域内住院人均费用",
        "efficiency",
        "本县参保人在县域内住院的总费用（元）",
        "本县参保人在县域内的住院人次",
        unit="元",
        scale=1,
        direction="down",
        source="医保结算数据",
        level="county",
        bounded=False,
        national_no=10,
        note=_FORMULA + "分母取住院人次（亦可取人数，需选定并统一，UNCONFIRMED）。"
        "增长率=(本期−上期)÷上期，由看板按期间计算，不单独入库。"
        "2020版别名：参保人员县域内住院次均费用增长率。",
    ),
    _rate(
        "NCM-11",
        "参保人县域内住院人次占比",
        "efficiency",
        "本县参保人在县域内医疗机构的住院人次",
        "本县参保人全部住院人次（县域内与县域外之和）",
        source="医保结算数据",
        level="county",
        national_no=11,
        note=_FORMULA + "即“县域就诊率 90%”的实际口径。需县外就诊（医保异地结算）数据，否则无分母。"
        "2020版别名：县域内住院人次占比。目标参考：90%（2019/2020 年国家目标）。",
    ),
    _rate(
        "NCM-12",
        "县域内中医类诊疗量占比",
        "efficiency",
        "本机构中医类诊疗人次（中医类机构全部诊疗人次，及其他机构中医科室诊疗人次）",
        "本机构诊疗人次数",
        source="HIS 诊疗人次统计",
        national_no=12,
        note=_FORMULA,
    ),
    _rate(
        "NCM-13",
        "县域内慢性病健康管理人群住院率",
        "health_outcomes",
        "年内发生住院的基本公卫在管高血压、2型糖尿病患者数",
        "基本公卫在管高血压、2型糖尿病患者数",
        direction="down",
        period="year",
        collection="mixed",
        source="基本公卫系统；医保结算数据（住院）",
        level="county",
        national_no=13,
        note=_FORMULA + "在管人群来自公卫系统，住院需与医保结算（含县外住院）匹配，故为县级填报。",
    ),
    _rate(
        "NCM-14",
        "县域内四类慢性病过早死亡率",
        "health_outcomes",
        "30–70 岁人群因心脑血管疾病、癌症、慢性呼吸系统疾病、糖尿病死亡的概率（%，寿命表法）",
        "1（概率已由寿命表算出，分母记 1）",
        direction="down",
        period="year",
        collection="manual",
        source="死因监测系统",
        level="county",
        additive=False,
        national_no=14,
        note="寿命表法（WHO SDG 3.4.1）：1−Π(1−₅qₓ)，年龄组 30–34 … 65–69；公式为通行方法，国家口径待核实。"
        "填报方式：分子为概率（0–1），分母 1。概率不能相加，故 additive=false：只在县级显示，不汇总。"
        "目标参考：浙江 2023 年起重大慢病过早死亡率 ≤9.3%（浙卫发〔2023〕10号）。",
    ),
]
# NCM-14's figure is a probability computed outside; the numerator 0–1 over 1 keeps it within its bound.

HIS, HRP, PH, FIN = "HIS 统计", "HRP/HIS", "基本公卫系统", "财务系统"

OPERATIONAL = [
    # 医疗资源
    _count("RES-BEDS", "实有床位数", "resources", "期末实有床位数", unit="张", period="year", source=HRP),
    _rate(
        "RES-BEDS-PER-1000",
        "每千常住人口床位数",
        "resources",
        "县域内医疗卫生机构期末实有床位数",
        "县域常住人口数",
        unit="张/千人",
        scale=1000,
        direction="monitor",
        period="year",
        collection="mixed",
        source="HRP/HIS；统计公报（常住人口）",
        level="county",
        bounded=False,
    ),
    _count(
        "RES-HEALTH-TECH",
        "卫生技术人员数",
        "resources",
        "期末在岗卫生技术人员数",
        unit="人",
        period="year",
        collection="manual",
        source="人事系统",
    ),
    _count(
        "RES-DOCTORS",
        "执业（助理）医师数",
        "resources",
        "期末执业（助理）医师数",
        unit="人",
        period="year",
        collection="manual",
        source="人事系统",
    ),
    _count(
        "RES-NURSES",
        "注册护士数",
        "resources",
        "期末注册护士数",
        unit="人",
        period="year",
        collection="manual",
        source="人事系统",
    ),
    _rate(
        "RES-DOCTOR-NURSE-RATIO",
        "医护比",
        "resources",
        "执业（助理）医师数",
        "注册护士数",
        unit="比值",
        scale=1,
        direction="monitor",
        period="year",
        collection="manual",
        source="人事系统",
        bounded=False,
        note="医师数 ÷ 护士数（1:x 的倒数形式显示前需换算）。",
    ),
    _count(
        "RES-GPS",
        "全科医生数",
        "resources",
        "期末注册全科医生数（含助理全科）",
        unit="人",
        direction="up",
        period="year",
        collection="manual",
        source="人事系统",
    ),
    _rate(
        "RES-GPS-PER-10000",
        "每万常住人口全科医生数",
        "resources",
        "县域内注册全科医生数",
        "县域常住人口数",
        unit="人/万人",
        scale=10000,
        period="year",
        collection="manual",
        source="人事系统；统计公报",
        level="county",
        bounded=False,
    ),
    _count(
        "RES-EQUIPMENT-10K",
        "万元以上设备台数",
        "resources",
        "期末单价万元以上设备台数",
        unit="台",
        direction="up",
        period="year",
        collection="manual",
        source="资产管理系统",
    ),
    # 门诊
    _count("OP-VISITS", "门急诊人次", "outpatient", "期内门诊、急诊人次数", unit="人次", source=HIS),
    _rate(
        "OP-COST-PER-VISIT",
        "门诊次均费用",
        "outpatient",
        "门诊收入（元）",
        "门急诊人次",
        unit="元",
        scale=1,
        direction="down",
        source="HIS；财务系统",
        bounded=False,
        note="看板同时显示同比增长；控制的是增长。",
    ),
    _rate(
        "OP-VISITS-PER-DOCTOR-DAY",
        "医师日均担负诊疗人次",
        "outpatient",
        "年内诊疗人次数",
        "平均执业（助理）医师数 × 251 个工作日",
        unit="人次",
        scale=1,
        period="year",
        direction="monitor",
        collection="mixed",
        source="HIS；人事系统",
        bounded=False,
        note="251 个工作日为统计年鉴惯例（UNCONFIRMED）；分母由机构按 平均医师数×251 报送。",
    ),
    # 检查
    _count("EXAM-VISITS", "检查人次", "examination", "期内检查人次数", unit="人次", source="PACS/HIS"),
    _count(
        "EXAM-REMOTE-IMAGING",
        "远程影像诊断量",
        "examination",
        "县域影像中心为成员单位出具的远程诊断报告数",
        unit="例",
        direction="up",
        source="县域影像中心",
    ),
    _count(
        "EXAM-REMOTE-ECG",
        "远程心电诊断量",
        "examination",
        "县域心电中心为成员单位出具的远程诊断报告数",
        unit="例",
        direction="up",
        source="县域心电中心",
    ),
    _rate(
        "EXAM-MUTUAL-RECOGNITION",
        "检查检验结果互认率",
        "examination",
        "互认项次",
        "可互认项次",
        source="PACS/LIS；共享中心",
    ),
    # 检验
    _count("LAB-TESTS", "检验项次", "laboratory", "期内检验项次数", unit="项次", source="LIS"),
    _rate(
        "LAB-CRITICAL-CLOSURE", "危急值闭环率", "laboratory", "按时完成处置并记录的危急值数", "危急值总数", source="LIS"
    ),
    # 住院
    _count("IP-ADMISSIONS", "入院人次", "inpatient", "期内入院人次数", unit="人次", source=HIS),
    _count("IP-DISCHARGES", "出院人次", "inpatient", "期内出院人次数", unit="人次", source=HIS),
    _rate(
        "IP-BED-OCCUPANCY",
        "病床使用率",
        "inpatient",
        "实际占用总床日数",
        "实际开放总床日数",
        direction="monitor",
        source=HIS,
        bounded=False,
        note="加床时可超过 100%，故不设上限。常见经验区间约 85–93%（UNCONFIRMED），宜以目标或阈值规则设定。",
    ),
    _rate(
        "IP-ALOS",
        "平均住院日",
        "inpatient",
        "出院者占用总床日数",
        "出院人数",
        unit="天",
        scale=1,
        direction="down",
        source=HIS,
        bounded=False,
    ),
    _rate(
        "IP-BED-TURNOVER",
        "病床周转次数",
        "inpatient",
        "出院人数",
        "平均开放床位数",
        unit="次",
        scale=1,
        source=HIS,
        bounded=False,
    ),
    _rate(
        "IP-COST-PER-CASE",
        "住院次均费用",
        "inpatient",
        "住院收入（元）",
        "出院人数",
        unit="元",
        scale=1,
        direction="down",
        source="HIS；财务系统",
        bounded=False,
        note="看板同时显示同比增长；控制的是增长。",
    ),
    # 手术
    _count("SURG-OPERATIONS", "手术台次", "surgery", "期内手术台次数", unit="台次", source="病案首页"),
    _rate(
        "SURG-DISCHARGE-SURGERY-SHARE",
        "出院患者手术占比",
        "surgery",
        "出院患者中施行手术的人数",
        "出院人数",
        source="病案首页",
    ),
    _rate(
        "SURG-GRADE34-SHARE",
        "出院患者三、四级手术比例",
        "surgery",
        "出院患者三级、四级手术台次",
        "出院患者手术台次",
        source="病案首页",
        note="分母取出院患者手术台次（另一口径为出院人次，未采用）。合并二级公立医院绩效监测“三级手术占比”与"
        "三级公立医院绩效考核“四级手术比例”。2020版别名：牵头医院出院患者三、四级手术比例。",
    ),
    # 慢病管理
    _rate(
        "CD-HTN-STANDARD-MGMT",
        "高血压患者规范管理率",
        "chronic_disease",
        "按照规范要求进行高血压患者健康管理的人数",
        "年内已管理的高血压患者人数",
        period="quarter",
        source=PH,
    ),
    _rate(
        "CD-HTN-BP-CONTROL",
        "管理人群血压控制率",
        "chronic_disease",
        "最近一次随访血压达标人数",
        "已管理的高血压患者人数",
        period="quarter",
        source=PH,
    ),
    _rate(
        "CD-DM-STANDARD-MGMT",
        "2型糖尿病患者规范管理率",
        "chronic_disease",
        "按照规范要求进行2型糖尿病患者健康管理的人数",
        "年内已管理的2型糖尿病患者人数",
        period="quarter",
        source=PH,
    ),
    _rate(
        "CD-DM-GLUCOSE-CONTROL",
        "管理人群血糖控制率",
        "chronic_disease",
        "最近一次随访空腹血糖达标人数",
        "已管理的2型糖尿病患者人数",
        period="quarter",
        source=PH,
    ),
    _rate(
        "CD-GRASSROOTS-MGMT",
        "慢病患者基层管理率",
        "chronic_disease",
        "在基层医疗卫生机构管理的高血压、2型糖尿病患者数",
        "辖区高血压、2型糖尿病患者估算数",
        period="year",
        collection="mixed",
        source="基本公卫系统；患病率估算",
        level="county",
        note="分母为按患病率估算的患者数（估算方法由县确定），为 NCM-13 的配套指标。"
        "2020版别名：慢病患者基层医疗卫生机构管理率。",
    ),
    # 妇幼健康
    _rate(
        "MCH-EARLY-PREG-REG",
        "早孕建册率",
        "maternal_child",
        "孕13周前建册并进行首次产前检查的产妇数",
        "活产数",
        period="quarter",
        source="妇幼保健信息系统",
        note="分母用活产数（多胎时产妇数少于活产数，分子仍不超过分母）。",
    ),
    _rate(
        "MCH-POSTPARTUM-VISIT",
        "产后访视率",
        "maternal_child",
        "产后28天内接受过产后访视的产妇数",
        "活产数",
        period="quarter",
        source="妇幼保健信息系统",
    ),
    _rate(
        "MCH-MATERNAL-SYS-MGMT",
        "孕产妇系统管理率",
        "maternal_child",
        "早孕建册、孕期产检≥5次并产后访视的产妇数",
        "活产数",
        period="quarter",
        source="妇幼保健信息系统",
    ),
    _rate(
        "MCH-CHILD-HEALTH-MGMT",
        "0–6岁儿童健康管理率",
        "maternal_child",
        "年内接受1次及以上随访的0–6岁儿童数",
        "辖区0–6岁儿童数",
        period="quarter",
        source="妇幼保健信息系统",
    ),
    _rate(
        "MCH-NEWBORN-VISIT",
        "新生儿访视率",
        "maternal_child",
        "出生28天内接受1次及以上访视的新生儿数",
        "活产数",
        period="quarter",
        source="妇幼保健信息系统",
    ),
    # 预防接种
    _rate(
        "VAC-NIP-COVERAGE",
        "适龄儿童国家免疫规划疫苗接种率",
        "vaccination",
        "实种人数",
        "应种人数",
        period="quarter",
        source="免疫规划信息系统",
        note="各疫苗分别统计时应拆分为子指标；此处为全部疫苗剂次合计。目标参考：各疫苗 ≥90%（惯例，UNCONFIRMED）。",
    ),
    _rate(
        "VAC-ELDERLY-FLU",
        "60岁及以上老年人流感疫苗接种率",
        "vaccination",
        "年内接种流感疫苗的60岁及以上常住居民数",
        "辖区60岁及以上常住居民数",
        period="quarter",
        source="免疫规划信息系统",
    ),
    # 家庭医生签约（平台自动计算的 4 项在下方 AUTOMATIC）
    _rate(
        "FD-FULFILMENT",
        "履约率",
        "family_doctor",
        "已提供的签约服务包项目数",
        "应提供的签约服务包项目数",
        period="quarter",
        collection="manual",
        source="家庭医生签约系统",
        note="平台尚未记录服务包逐项履约，暂为手工填报。",
    ),
    _rate(
        "FD-SIGNED-GRASSROOTS-VISITS",
        "签约居民基层就诊率",
        "family_doctor",
        "签约居民在基层医疗卫生机构的就诊人次",
        "签约居民全部就诊人次",
        period="quarter",
        collection="mixed",
        source="HIS；医保结算数据",
        level="county",
        note="需签约名单与医保结算匹配（含县外就诊），故为县级填报。",
    ),
    # 医疗收入
    _count("REV-MEDICAL", "医疗收入", "revenue", "期内医疗收入（元）", unit="元", source=FIN),
    _rate(
        "REV-SERVICE-SHARE",
        "医疗服务收入占医疗收入比例",
        "revenue",
        "医疗服务收入（元）＝医疗收入−药品收入−卫生材料收入−检查收入−化验收入",
        "医疗收入（元）",
        source=FIN,
        note="2020版别名：医疗服务收入占医疗收入比例（不含药品、耗材、检查、化验收入）。",
    ),
    _rate("REV-DRUG-SHARE", "药占比", "revenue", "药品收入（元）", "医疗收入（元）", direction="down", source=FIN),
    _rate(
        "REV-CONSUMABLE-SHARE",
        "耗占比",
        "revenue",
        "卫生材料收入（元）",
        "医疗收入（元）",
        direction="down",
        source=FIN,
    ),
    _rate(
        "REV-INSURANCE-SHARE",
        "医保基金收入占医疗收入比例",
        "revenue",
        "医保基金支付的医疗收入（元）",
        "医疗收入（元）",
        direction="monitor",
        source="财务系统；医保结算数据",
    ),
    _rate(
        "REV-STAFF-EXPENSE-SHARE",
        "基层人员支出占业务支出比例",
        "revenue",
        "人员经费支出（元）",
        "业务支出（元）",
        period="year",
        collection="manual",
        source=FIN,
        note="适用于基层医疗卫生机构。2020版别名：基层人员支出占业务支出比例。",
    ),
]

FD, REF = "平台：家庭医生签约", "平台：双向转诊"

AUTOMATIC = [
    _rate(
        "FD-COVERAGE",
        "签约服务覆盖率",
        "family_doctor",
        "有效签约居民数",
        "辖区常住人口数",
        period="year",
        source=FD,
        auto="family_doctor.coverage",
        note="目标参考：浙江 2023 年居民签约覆盖率 ≥42%；国家 2035 年 ≥75%。",
    ),
    _rate(
        "FD-KEY-COVERAGE",
        "重点人群签约服务覆盖率",
        "family_doctor",
        "有效签约的重点人群人数（去重）",
        "辖区重点人群总数（去重）",
        period="year",
        source=FD,
        auto="family_doctor.key_population_coverage",
        note="一人属多类重点人群时只计一次。目标参考：浙江 2023 年 ≥85%；国家 2035 年 ≥85%。",
    ),
    _rate(
        "FD-RENEWAL",
        "续约率",
        "family_doctor",
        "上一签约周期签约且本周期续签的人数",
        "上一签约周期签约人数",
        period="year",
        source=FD,
        auto="family_doctor.renewal_rate",
    ),
    _count(
        "FD-OVERDUE-FOLLOW-UPS",
        "逾期未随访人数",
        "family_doctor",
        "期末随访计划已逾期且未完成随访的签约居民数",
        unit="人",
        direction="down",
        source=FD,
        auto="family_doctor.overdue_follow_ups",
    ),
    _count(
        "REF-UP",
        "上转人次",
        "referral",
        "期内本机构发起并提交的上转人次",
        unit="人次",
        source=REF,
        auto="referral.up_out",
    ),
    _count(
        "REF-DOWN",
        "下转人次",
        "referral",
        "期内本机构发起并提交的下转人次（门急诊＋住院）",
        unit="人次",
        direction="up",
        source=REF,
        auto="referral.down_out",
        note="对应三级公立医院绩效考核“下转患者人次数（门急诊＋住院）”；2020版别名：牵头医院下转患者人次数。",
    ),
    _rate(
        "REF-TIMELY-ACCEPT",
        "转诊接收及时率",
        "referral",
        "在时限内应答的转诊数",
        "已应答的转诊数",
        source=REF,
        auto="referral.timely_acceptance",
    ),
    _rate("REF-ARRIVAL", "到诊率", "referral", "已到诊的转诊数", "已接收的转诊数", source=REF, auto="referral.arrival"),
    _rate("REF-CLOSURE", "结案率", "referral", "已结案的转诊数", "全部转诊数", source=REF, auto="referral.closure"),
    _rate(
        "REF-DOWN-FOLLOW-UP",
        "下转后随访完成率",
        "referral",
        "下转后按计划完成随访的患者数",
        "应随访的下转患者数",
        source=REF,
        auto="referral.down_follow_up",
    ),
]

SEED = NATIONAL + OPERATIONAL + AUTOMATIC
SEEDED_CODES = tuple(row["code"] for row in SEED)


def upgrade() -> None:
    now = datetime.now(UTC)
    op.bulk_insert(
        indicators, [row | {"active": True, "version": 1, "updated_at": now, "updated_by": "migration"} for row in SEED]
    )


def downgrade() -> None:
    conn = op.get_bind()
    seeded = sa.select(indicators.c.id).where(indicators.c.code.in_(SEEDED_CODES))
    held = {}
    for name in ("indicator_values", "indicator_rollups", "indicator_targets", "indicator_versions"):
        table = sa.table(name, sa.column("indicator_id", sa.Integer))
        count = conn.scalar(sa.select(sa.func.count()).select_from(table).where(table.c.indicator_id.in_(seeded)))
        if count:
            held[name] = count
    if held:
        # Values, targets and edit history are operators' data: refuse rather than delete them with the seed.
        raise RuntimeError(
            "0013 downgrade refused: rows still refer to the seeded indicators "
            + ", ".join(f"{name}={count}" for name, count in sorted(held.items()))
            + "; delete them deliberately first, or downgrade past 0012 (which drops the tables)"
        )
    conn.execute(sa.delete(indicators).where(indicators.c.code.in_(SEEDED_CODES)))
